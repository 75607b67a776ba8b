#!/usr/bin/env python3
"""The Python stack people run KCP layers on today, timed on the layer kcp just ran.

`cargo run --release --example bench_table -- --anchors` writes a layer's factors, a batch of x
and kcp's y as .npy files into a directory and runs this script once per (batch, threads), one
process each, so that BLAS and XLA start with that many threads. It prints one JSON object:
the BLAS that ran (threadpoolctl), and per method the median time of a call and its largest
relative error against kcp's y (every method computes the same y = x W^T, W = sum_r A_1[r] (x)
... (x) A_D[r]).

Methods: `opt_einsum` (numpy, the optimal path, as a contract_expression built once),
`rank_loop` (tednet-style: a Python loop over the rank, one mode product per factor with
numpy.tensordot), `torch_einsum` (if torch is installed), `jax_jit` (if jax is installed:
jnp.einsum with the optimal path under jax.jit, float32 on the CPU).

Another format's network (`cargo run --release --example formats -- --anchors`): the directory
also holds `equation.txt`, the einsum of x (saved as [B, n_1, .., n_D]) and the cores
(`factor.{k}.npy`, each in its storage layout) into y; the rank loop, KCP's own, is left out.

Needs numpy, opt_einsum and threadpoolctl (pip install numpy opt_einsum threadpoolctl; jax and
torch optional). Never used by the tests.
"""

import argparse
import json
import os
import sys
import time

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--dir", required=True, help="directory with x.npy, y.npy, factor.0.npy ...")
ARGS.add_argument("--threads", type=int, default=1)
ARGS.add_argument("--budget", type=float, default=0.3, help="seconds of timed calls per method")
ARGS.add_argument("--min-runs", type=int, default=11)
OPTS = ARGS.parse_args()

# Before numpy loads OpenBLAS: these two, if set on the machine, make a current OpenBLAS pick
# a slow kernel; the thread counts hold for every library that reads them at start-up.
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(OPTS.threads)
if OPTS.threads == 1:
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import opt_einsum as oe  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def load():
    x = np.load(os.path.join(OPTS.dir, "x.npy"))
    y = np.load(os.path.join(OPTS.dir, "y.npy"))
    factors = []
    while os.path.exists(os.path.join(OPTS.dir, f"factor.{len(factors)}.npy")):
        factors.append(np.load(os.path.join(OPTS.dir, f"factor.{len(factors)}.npy")))
    return x, y, factors


def equation(modes):
    """x[b, j_1..j_D] A_d[r, i_d, j_d] -> y[b, i_1..i_D]."""
    b, r = "b", "r"
    i, j = LETTERS[2 : 2 + modes], LETTERS[2 + modes : 2 + 2 * modes]
    terms = [b + j] + [r + i[d] + j[d] for d in range(modes)]
    return ",".join(terms) + "->" + b + i


def median_seconds(call):
    call()
    times, start = [], time.perf_counter()
    while len(times) < OPTS.min_runs or (time.perf_counter() - start < OPTS.budget and len(times) < 1000):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def rank_loop(x, factors):
    """tednet's order: for each rank term, one mode product per factor, then the sum."""
    batch, modes = x.shape[0], len(factors)
    y = 0.0
    for r in range(factors[0].shape[0]):
        t = x
        for d, a in enumerate(factors):
            # Contract mode d (axis 1 + d) with A_d[r] [m_d, n_d]; put the new axis back there.
            t = np.moveaxis(np.tensordot(t, a[r], axes=([1 + d], [1])), -1, 1 + d)
        y = y + t
    return np.asarray(y).reshape(batch, -1)


def main():
    x2, y_kcp, factors = load()
    batch = x2.shape[0]
    network = os.path.join(OPTS.dir, "equation.txt")
    if os.path.exists(network):
        with open(network) as f:
            eq = f.read().strip()
        x = np.ascontiguousarray(x2)
    else:
        in_shape = [a.shape[2] for a in factors]
        x = np.ascontiguousarray(x2.reshape([batch] + in_shape))
        eq = equation(len(factors))
    methods = {}
    with threadpool_limits(limits=OPTS.threads):
        expr = oe.contract_expression(eq, x.shape, *[a.shape for a in factors], optimize="optimal")
        methods["opt_einsum"] = lambda: expr(x, *factors).reshape(batch, -1)
        if not os.path.exists(network):
            methods["rank_loop"] = lambda: rank_loop(x, factors)
        try:
            import torch

            torch.set_num_threads(OPTS.threads)
            tx, tf = torch.from_numpy(x), [torch.from_numpy(a) for a in factors]
            methods["torch_einsum"] = lambda: torch.einsum(eq, tx, *tf).reshape(batch, -1).numpy()
        except ImportError:
            pass
        try:
            import jax
            import jax.numpy as jnp

            jx, jf = jnp.asarray(x), [jnp.asarray(a) for a in factors]
            fn = jax.jit(lambda x, *fs: jnp.einsum(eq, x, *fs, optimize="optimal").reshape(batch, -1))
            methods["jax_jit"] = lambda: np.asarray(fn(jx, *jf).block_until_ready())
        except ImportError:
            pass
        results = {}
        scale = float(np.abs(y_kcp).max()) or 1.0
        for name, call in methods.items():
            err = float(np.abs(call().astype(np.float64) - y_kcp).max()) / scale
            results[name] = {"median_ns": 1e9 * median_seconds(call), "max_rel_err": err}
        blas = [
            {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for info in threadpool_info()
        ]
    out = {"batch": batch, "threads": OPTS.threads, "numpy": np.__version__, "blas": blas, "methods": results}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
