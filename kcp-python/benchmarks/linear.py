"""kcp.torch.Linear against the same layer in plain PyTorch, measured side by side in one run.

    python kcp-python/benchmarks/linear.py [--threads 1] [--repeats 200]

For the UCF11 input projection (57,600 -> 1,024, KCP rank 4, factors [4, 4, 8], [4, 4, 20],
[4, 4, 20], [4, 16, 18]) at batch 1 and 16, forward and forward + backward, it times:
- kcp: kcp.torch.Linear (kcp's planned kernels, forward and backward);
- einsum: the same cores contracted with torch.einsum in kcp's planned order (the best a
  PyTorch user gets by hand: one einsum per planned step), autograd for the backward pass;
- dense: nn.Linear with the dense 1,024 x 57,600 weight (forward only: the baseline the format
  replaces).
Each cell is the median of `repeats` calls, kcp and einsum interleaved call by call so that
they meet the same machine (dense is timed on its own afterwards: its 236 MB weight would evict
everything the others keep in cache); the table gives microseconds per row and einsum's time
over kcp's.
"""

import argparse
import statistics
import time

import torch

import kcp.torch


def planned_einsum(cores, x):
    """y = x W^T for the UCF11 layer in kcp's planned order: A2, A3, A1, A4 (docs: README)."""
    a1, a2, a3, a4 = cores
    b = x.shape[0]
    t = x.reshape(b, 8, 20, 20, 18)
    t = torch.einsum("bjkln,rik->brjiln", t, a2)       # sum j2
    t = torch.einsum("brjiln,rml->brjimn", t, a3)      # sum j3
    t = torch.einsum("brjimn,rpj->brpimn", t, a1)      # sum j1
    y = torch.einsum("brpimn,rqn->bpimq", t, a4)       # sum r, j4
    return y.reshape(b, 1024)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    layer = kcp.torch.Linear([8, 20, 20, 18], [4, 4, 4, 16], rank=4, bias=False)
    cores = [c.detach().clone().requires_grad_() for c in layer.cores]
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats} calls, us per row")
    print("| batch | pass | kcp | einsum (planned order) | dense nn.Linear | einsum / kcp |")
    print("|---|---|---|---|---|---|")
    for batch in [1, 16]:
        x = torch.randn(batch, 57600)
        with torch.no_grad():
            y_kcp, y_ein = layer(x), planned_einsum(cores, x)
        assert torch.allclose(y_kcp, y_ein, rtol=1e-3, atol=1e-4), "the two paths disagree"
        dense = torch.nn.Linear(57600, 1024, bias=False)
        xg = x.clone().requires_grad_()

        def kcp_fwd():
            with torch.no_grad():
                layer(x)

        def ein_fwd():
            with torch.no_grad():
                planned_einsum(cores, x)

        def dense_fwd():
            with torch.no_grad():
                dense(x)

        def kcp_train():
            layer(xg).sum().backward()

        def ein_train():
            planned_einsum(cores, xg).sum().backward()

        for name, variants, alone in [("forward", [kcp_fwd, ein_fwd], dense_fwd),
                                      ("forward + backward", [kcp_train, ein_train], None)]:
            for fn in variants:
                fn()  # warm up
            samples = [[] for _ in variants]
            for _ in range(args.repeats):
                for k, fn in enumerate(variants):
                    start = time.perf_counter()
                    fn()
                    samples[k].append(time.perf_counter() - start)
            med = [statistics.median(s) * 1e6 / batch for s in samples]
            dense_cell = "-"
            if alone is not None:
                alone()
                times = []
                for _ in range(max(3, args.repeats // 10)):
                    start = time.perf_counter()
                    alone()
                    times.append(time.perf_counter() - start)
                dense_cell = f"{statistics.median(times) * 1e6 / batch:.1f}"
            print(f"| {batch} | {name} | {med[0]:.1f} | {med[1]:.1f} | {dense_cell} | {med[1] / med[0]:.2f}x |")


if __name__ == "__main__":
    main()
