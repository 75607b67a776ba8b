"""kcp.torch.Linear against what a PyTorch user runs today on the same compressed layer,
measured side by side in one process.

    pip install opt_einsum tensorly-torch   # optional: opt_einsum's paths, tensorly-torch's layers
    python kcp-python/benchmarks/linear.py [--quick] [--formats kcp tt ...] [--threads 1 2]

The layer is the UCF11 input projection (57,600 = 8x20x20x18 inputs -> 1,024 = 4x4x4x16
gates) in KCP at rank 4 (the headline layer, 1,920 parameters) and in every format with the
ranks of docs/formats.md's matched budgets (matched there for out shape [16,4,4,4]; here they
hold 3,384 to 4,352 parameters, the params column). For one thread and two, batch 1,
16 and 256, forward and forward + backward (dx included), it times:
- kcp: `kcp.torch.Linear` (kcp's planned kernels forward and backward);
- einsum: one `torch.einsum` over x and every core, the network written as docs/formats.md
  writes it (what a PyTorch user writes: torch contracts it in opt_einsum's order when
  opt_einsum is installed, left to right otherwise), autograd for the backward pass;
- tensorly-torch: `tltorch.FactorizedLinear` of the same format and ranks where it has one (CP
  and TT, its "blocktt"), when installed.
Each cell is the median of calls interleaved call by call (kcp, einsum, tensorly-torch, kcp,
...) so that they meet the same machine, at least `--repeats` calls and half a second each;
times are microseconds per row, the ratios the others' time over kcp's.
"""

import argparse
import os
import statistics
import sys
import time

import torch

import kcp.torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from reference import subscripts  # noqa: E402  (the networks as docs/formats.md writes them)

IN, OUT = [8, 20, 20, 18], [4, 4, 4, 16]
LAYERS = [
    ("kcp r4", "kcp", dict(rank=4)),
    ("kcp r9", "kcp", dict(rank=9)),
    ("tt 1x4x4x4x1", "tt", dict(ranks=[1, 4, 4, 4, 1])),
    ("tr 8x6", "tr", dict(ranks=[6] * 8)),
    ("bt 2x4", "bt", dict(blocks=2, ranks=[4] * 4)),
    ("cp r36", "cp", dict(rank=36)),
    ("ht r7", "ht", dict(rank=7)),
]


def whole_network(module):
    """y = x W^T as one torch.einsum over x and every core (no bias)."""
    format, d = module.layer.format, len(IN)
    cores_to_w = subscripts(format, d, module.core_names)
    terms, w = cores_to_w.split("->")
    i, j = w[:d], w[d:]
    equation = f"Z{j},{terms}->Z{i}"
    cores = [c.detach().clone().requires_grad_() for c in module.cores]

    def run(x):
        return torch.einsum(equation, x.reshape(-1, *IN), *cores).reshape(-1, module.out_features)

    return run


def tensorly_layer(format, keys):
    """tensorly-torch's layer of this format and ranks, or None."""
    try:
        import tltorch
    except ImportError:
        return None
    if format == "cp":
        return tltorch.FactorizedLinear(tuple(IN), tuple(OUT), bias=False, factorization="cp", rank=keys["rank"])
    if format == "tt":
        return tltorch.FactorizedLinear(tuple(IN), tuple(OUT), bias=False, factorization="blocktt",
                                        rank=tuple(keys["ranks"]))
    return None


def measure(functions, repeats, budget):
    """The median seconds of each function, called in turn."""
    for function in functions:
        function()
    samples = [[] for _ in functions]
    start = time.perf_counter()
    while len(samples[0]) < repeats or time.perf_counter() - start < budget:
        for k, function in enumerate(functions):
            begin = time.perf_counter()
            function()
            samples[k].append(time.perf_counter() - begin)
        if len(samples[0]) >= 10 * repeats:
            break
    return [statistics.median(s) for s in samples]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", nargs="+", help="layer names of the table (default: all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.5, help="seconds per cell at least")
    parser.add_argument("--quick", action="store_true", help="KCP rank 4 only, batch 1 and 16")
    args = parser.parse_args()
    layers = [layer for layer in LAYERS if args.formats is None or layer[0] in args.formats]
    if args.quick:
        layers, args.batches = LAYERS[:1], [1, 16]
    tl = "installed" if tensorly_layer("cp", dict(rank=1)) is not None else "not installed"
    print(f"torch {torch.__version__}, opt_einsum {'on' if torch.backends.opt_einsum.enabled else 'off'} "
          f"({'installed' if torch.backends.opt_einsum.is_available() else 'not installed'}), "
          f"tensorly-torch {tl}; {os.cpu_count()} cores; us per row, medians")
    print("| layer | params | threads | batch | pass | kcp | einsum | tensorly-torch | einsum / kcp | tltorch / kcp |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, format, keys in layers:
            torch.manual_seed(0)
            module = kcp.torch.Linear(IN, OUT, format=format, bias=False, **keys)
            einsum = whole_network(module)
            tl_layer = tensorly_layer(format, keys)
            for batch in args.batches:
                x = torch.randn(batch, 57600)
                with torch.no_grad():
                    assert torch.allclose(module(x), einsum(x), rtol=1e-3, atol=1e-3), "kcp and einsum disagree"
                xg = x.clone().requires_grad_()
                forward = [lambda: module(x), lambda: einsum(x)] + ([lambda: tl_layer(x)] if tl_layer else [])
                train = [lambda: module(xg).sum().backward(), lambda: einsum(xg).sum().backward()] + (
                    [lambda: tl_layer(xg).sum().backward()] if tl_layer else [])
                for pass_name, functions in [("forward", forward), ("forward + backward", train)]:
                    if pass_name == "forward":
                        with torch.no_grad():
                            times = measure(functions, args.repeats, args.budget)
                    else:
                        times = measure(functions, args.repeats, args.budget)
                    us = [t * 1e6 / batch for t in times]
                    tl_cell = f"{us[2]:.1f}" if tl_layer else "-"
                    tl_ratio = f"{us[2] / us[0]:.1f}x" if tl_layer else "-"
                    print(f"| {name} | {module.layer.params} | {threads} | {batch} | {pass_name} | {us[0]:.1f} | "
                          f"{us[1]:.1f} | {tl_cell} | {us[1] / us[0]:.1f}x | {tl_ratio} |", flush=True)


if __name__ == "__main__":
    main()
