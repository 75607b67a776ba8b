"""The example and the benchmark scripts run (small settings; their numbers are not checked:
speed is measured by running them, never asserted in a test)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

SCRIPTS = [
    ("examples/train_ucf11.py", ["--quick", "--epochs", "1", "--kcp-only", "--threads", "1"], "| KCP | 1920 |"),
    ("benchmarks/linear.py", ["--quick", "--threads", "1", "--repeats", "1", "--budget", "0.01"], "| kcp r4 | 1920 |"),
    ("benchmarks/epoch.py", ["--clips", "32", "--threads", "1"], "| 1 |"),
    ("benchmarks/recurrence.py", ["--batches", "1", "8", "--repeats", "2"], "| gru | 8 |"),
]


@pytest.mark.parametrize("script,args,expect", SCRIPTS, ids=[s[0] for s in SCRIPTS])
def test_script_runs_and_prints_its_table(script, args, expect):
    done = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout, done.stdout
