"""The recurrence of the example's cells (hidden 256; the input projection left out): torch
operations (what `kcp.torch.LSTM` / `GRU` run off the CPU or with engine="torch") beside kcp's
recurrence (what they run on float32 CPU tensors: the Rust crate's `Recurrent::run_taped` and
its backpropagation through time, through a torch.autograd.Function), one process, calls
interleaved.

    python kcp-python/benchmarks/recurrence.py [--threads 1] [--steps 16] [--batches 1 16]

Each cell is the median of interleaved calls of the forward pass (under no_grad; kcp runs its
taped pass either way) and of forward + backward (the gradients of sum(h * dh) over every
step: the projected inputs', W_hh's and b_hh's), microseconds per step; the values are checked
against each other first.
"""

import argparse
import statistics
import time

import torch

import kcp.torch


def measure(functions, repeats):
    for function in functions:
        function()
    samples = [[] for _ in functions]
    for _ in range(repeats):
        for k, function in enumerate(functions):
            start = time.perf_counter()
            function()
            samples[k].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hidden, steps = args.hidden, args.steps
    print(f"torch {torch.__version__}, {args.threads} thread(s), hidden {hidden}, {steps} steps, "
          f"medians of {args.repeats} interleaved calls, us per step")
    print("| cell | batch | pass | torch | kcp | torch / kcp |")
    print("|---|---:|---|---:|---:|---:|")
    for cell, make in [("lstm", kcp.torch.LSTM), ("gru", kcp.torch.GRU)]:
        g = make.gates * hidden
        torch.manual_seed(0)
        module = make([g], [g], hidden, format="kcp", rank=1)  # only its recurrence is used
        for batch in args.batches:
            proj = torch.randn(steps, batch, g)
            dh = torch.randn(steps, batch, hidden)
            got, want = module._kcp_recurrence(proj, None)[0], module._torch_recurrence(proj, None)[0]
            assert torch.allclose(got, want, atol=1e-5), "the recurrences disagree"

            def forward(recurrence):
                def run():
                    with torch.no_grad():
                        recurrence(proj, None)
                return run

            def train(recurrence):
                def run():
                    p = proj.clone().requires_grad_()
                    (recurrence(p, None)[0] * dh).sum().backward()
                return run

            for name, make_run in [("forward", forward), ("forward + backward", train)]:
                functions = [make_run(module._torch_recurrence), make_run(module._kcp_recurrence)]
                t, k = (s * 1e6 / steps for s in measure(functions, args.repeats))
                print(f"| {cell} | {batch} | {name} | {t:.1f} | {k:.1f} | {t / k:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
