#!/usr/bin/env bash
# Quickstart command 1: install eqtool (CPU torch 2.13.0 first), train the quick Cu potential on the
# bundled EMT data, print its test metrics, relax a vacancy and run a short MD with it.
# Everything is written under $EQTOOL_QUICKSTART_DIR (default runs/quickstart), which is started afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e .
out=${EQTOOL_QUICKSTART_DIR:-runs/quickstart}
rm -rf "$out" && mkdir -p "$out"
eqtool info
eqtool data info data/cu_emt.h5
eqtool train recipes/potential/cu-quick.yaml --run-dir "$out/cu-quick"
eqtool relax data/examples/cu_vacancy.extxyz --model "$out/cu-quick/model.pt" --fmax 0.02 \
  --out "$out/vacancy_relaxed.extxyz" --threads 1
eqtool md data/examples/cu_bulk.extxyz --model "$out/cu-quick/model.pt" --ensemble nvt -T 300 \
  --timestep 2 --steps 200 --interval 10 --out "$out/md.h5" --threads 1
echo "quickstart outputs in $out"
