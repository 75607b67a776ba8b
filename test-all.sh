#!/usr/bin/env bash
# Every test: the Rust workspace, then the Python package (kcp-python/) installed with its test
# dependencies (numpy, torch, pytest) into a virtual environment under target/, and its tests.
# The Python dependencies are installed first, before the Rust test build fills the disk, and
# without pip's cache: torch's wheels are several GB, and a second copy of them helps no one.
set -euo pipefail
cd "$(dirname "$0")"
venv=target/python-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    "./kcp-python[test]"
cargo test --workspace
"$venv/bin/python" -m pytest -q kcp-python/tests
