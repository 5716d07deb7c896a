#!/usr/bin/env bash
# Install eqtool with its test extras (CPU torch 2.13.0 first) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m pytest -q tests "$@"
