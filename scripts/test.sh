#!/usr/bin/env bash
# Install eqtool (CPU torch 2.13.0 first) with the extras its tests use: test, dft (pyscf, tblite),
# dock (vina, meeko, gemmi, posebusters); then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test,dft,dock]"
# one BLAS/OpenMP thread: tiny tensors, and 2 oversubscribed threads are far slower on 2 cores
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
ruff check eqtool tests
# tests/cluster (marker `cluster`) starts a single-node SLURM itself (tests/cluster/slurm_local.sh up:
# apt-installs it as root when missing). Without root/apt it skips with the reason; with CI=true it must
# run. `bash scripts/test.sh -m "not cluster"` leaves it out, `-m cluster` runs only it.
python -m pytest -q tests "$@"
