#!/usr/bin/env bash
# Install eqtool (CPU torch 2.13.0 first) and run the main job on the bundled data.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e .
out=${EQTOOL_QUICKSTART_DIR:-runs/quickstart}
mkdir -p "$out"
eqtool info
eqtool data convert data/examples/cu_small.extxyz "$out/cu_small.h5"
eqtool data info "$out/cu_small.h5"
