"""A training epoch of the example model (examples/train_ucf11.py: a KCP-LSTM, hidden 256, on
the UCF11-shaped clips) beside the same model in plain PyTorch, one process, one thread and
two.

    pip install opt_einsum   # optional: torch.einsum then contracts in opt_einsum's order
    python kcp-python/benchmarks/epoch.py [--clips 1100] [--threads 1 2]

The plain model is the same `kcp.torch.LSTM` (same parameters, same recurrence in torch
operations, same head, loss, Adam and clipping) whose input projection is one `torch.einsum`
over x and the four KCP factors, what a PyTorch user writes for the layer, differentiated by
autograd. Both train one epoch of the same batches in the same order, from the same weights;
the table gives seconds per epoch (data loading included: `kcp.data.collate`, the same for
both) and the plain model's time over kcp's.
"""

import argparse
import os
import sys
import time

import torch
from torch import nn

import kcp.data
import kcp.torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from train_ucf11 import HIDDEN, IN_SHAPE, Classifier  # noqa: E402


class EinsumProjection(nn.Module):
    """y = x W^T + b with W the KCP factors of `linear` (a kcp.torch.Linear), as one einsum."""

    def __init__(self, linear):
        super().__init__()
        self.cores, self.bias = linear.cores, linear.bias

    def forward(self, x):
        a1, a2, a3, a4 = self.cores
        y = torch.einsum("zjkln,rpj,rqk,rsl,rtn->zpqst", x.reshape(-1, *IN_SHAPE), a1, a2, a3, a4)
        return y.reshape(*x.shape[:-1], -1) + self.bias


def epoch(model, train_set, batch):
    """Seconds for one epoch of Adam with clipping, and the mean loss."""
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(1000), collate_fn=kcp.data.collate)
    losses, start = [], time.perf_counter()
    for x, labels in loader:
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimiser.step()
        losses.append(loss.item())
    return time.perf_counter() - start, sum(losses) / len(losses)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=kcp.data.TRAIN_LEN)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    start = time.perf_counter()
    train_set = kcp.data.Clips("train", args.clips)
    print(f"torch {torch.__version__}, opt_einsum {'installed' if torch.backends.opt_einsum.is_available() else 'not installed'}; "
          f"{args.clips} clips (generated in {time.perf_counter() - start:.1f} s), batch {args.batch}")
    print("| threads | kcp.torch.LSTM s per epoch | plain PyTorch s per epoch | plain / kcp | mean loss kcp / plain |")
    print("|---:|---:|---:|---:|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        ours = Classifier(kcp.torch.LSTM(IN_SHAPE, [4, 4, 4, 16], HIDDEN, rank=4, batch_first=True))
        plain = Classifier(kcp.torch.LSTM(IN_SHAPE, [4, 4, 4, 16], HIDDEN, rank=4, batch_first=True))
        plain.load_state_dict(ours.state_dict())
        plain.recurrent.input = EinsumProjection(plain.recurrent.input)
        ours_seconds, ours_loss = epoch(ours, train_set, args.batch)
        plain_seconds, plain_loss = epoch(plain, train_set, args.batch)
        print(f"| {threads} | {ours_seconds:.2f} | {plain_seconds:.2f} | {plain_seconds / ours_seconds:.1f}x | "
              f"{ours_loss:.4f} / {plain_loss:.4f} |", flush=True)


if __name__ == "__main__":
    main()
