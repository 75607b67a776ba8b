#!/usr/bin/env bash
# Every test: the Rust workspace, then the Python package (kcp-python/) installed with its test
# dependencies (numpy, torch, pytest) into a virtual environment under target/, and its tests.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./kcp-python[test]"
"$venv/bin/python" -m pytest -q kcp-python/tests
