"""Train a compressed LSTM on the synthetic UCF11-shaped clips in an ordinary PyTorch loop, and
the same LSTM with a dense input weight beside it: the Rust example `train_ucf11` in PyTorch.

    python kcp-python/examples/train_ucf11.py              # 12 epochs of 1,100 clips
    python kcp-python/examples/train_ucf11.py --quick      # 3 epochs of 330 clips
    python kcp-python/examples/train_ucf11.py --format tt --ranks 1 4 4 4 1 --kcp-only

The model: an LSTM (hidden 256) whose input projection maps a 160x120x3 frame (57,600 =
8x20x20x18 inputs) to the four gates (1,024 = 4x4x4x16), `kcp.torch.LSTM` with a KCP rank-4
weight by default (`--format` with `--rank`, `--ranks` or `--blocks` for the others; `--gru`
for GRU cells), then a linear classifier on the last hidden state. Clips come from `kcp.data`
through a `DataLoader` (`kcp.data.collate`: each clip's mean frame subtracted), the loss is
cross-entropy, the optimiser `torch.optim.Adam` (lr 2e-3, batch 16) with `clip_grad_norm_` at
5, as in the Rust example. The dense model (`nn.LSTM`, its 59 million input weights) trains on the same batches
in the same order from the same seed. Printed: the Rust example's table (parameters,
compression, test accuracy, seconds per epoch, microseconds per inference frame).
"""

import argparse
import statistics
import time

import torch
from torch import nn

import kcp.data
import kcp.torch

HIDDEN = 256
IN_SHAPE = [8, 20, 20, 18]


class Classifier(nn.Module):
    """A recurrent layer over the frames, then a linear layer on its last hidden state."""

    def __init__(self, recurrent):
        super().__init__()
        self.recurrent = recurrent
        self.head = nn.Linear(HIDDEN, kcp.data.CLASSES)

    def forward(self, x):
        out, _ = self.recurrent(x)  # x [B, T, N], batch first
        return self.head(out[:, -1])


def models(args):
    """The compressed model and the dense one, from the same seed."""
    gates = 3 if args.gru else 4
    keys = {"kcp": dict(rank=args.rank), "cp": dict(rank=args.rank), "ht": dict(rank=args.rank),
            "tt": dict(ranks=args.ranks), "tr": dict(ranks=args.ranks),
            "bt": dict(blocks=args.blocks, ranks=args.ranks)}[args.format]
    torch.manual_seed(args.seed)
    kind = kcp.torch.GRU if args.gru else kcp.torch.LSTM
    compressed = Classifier(kind(IN_SHAPE, [gates, 4, 4, 16], HIDDEN, format=args.format, batch_first=True, **keys))
    torch.manual_seed(args.seed)
    dense_kind = nn.GRU if args.gru else nn.LSTM
    dense = Classifier(dense_kind(kcp.data.FRAME, HIDDEN, batch_first=True))
    return compressed, dense


def train(model, train_set, test_set, args):
    """Train with Adam and gradient clipping; per epoch: (loss, test accuracy, seconds)."""
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    curve = []
    for epoch in range(args.epochs):
        order = torch.Generator().manual_seed(1000 + epoch)  # the same batches for every model
        loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch, shuffle=True, generator=order,
                                             collate_fn=kcp.data.collate)
        model.train()
        start, losses = time.perf_counter(), []
        for x, labels in loader:
            optimiser.zero_grad()
            loss = loss_fn(model(x), labels)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - start
        accuracy = evaluate(model, test_set, args.batch)
        curve.append((statistics.fmean(losses), accuracy, seconds))
        print(f"  {epoch + 1:2d}: loss {curve[-1][0]:.4f}, test accuracy {100 * accuracy:.1f}%, {seconds:.1f} s")
    return curve


def evaluate(model, test_set, batch):
    model.eval()
    hits = 0
    with torch.no_grad():
        for x, labels in torch.utils.data.DataLoader(test_set, batch_size=batch, collate_fn=kcp.data.collate):
            hits += (model(x).argmax(dim=1) == labels).sum().item()
    return hits / len(test_set)


def frame_time_us(model, test_set):
    """The median of nine inference runs of one test clip, per frame (batch 1)."""
    x = torch.from_numpy(kcp.data.frames(test_set[0][0])).unsqueeze(0)
    times = []
    with torch.no_grad():
        for _ in range(10):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e6 / kcp.data.FRAMES


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs of 330 clips, 110 test clips")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--format", default="kcp", choices=kcp.formats())
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--ranks", type=int, nargs="+")
    parser.add_argument("--blocks", type=int)
    parser.add_argument("--gru", action="store_true", help="GRU cells instead of LSTM cells")
    parser.add_argument("--kcp-only", action="store_true", help="the compressed model only")
    parser.add_argument("--threads", type=int, help="torch's and kcp's threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.epochs is None:
        args.epochs = 3 if args.quick else 12
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train_len, test_len = (330, 110) if args.quick else (kcp.data.TRAIN_LEN, kcp.data.TEST_LEN)
    kind = "GRU" if args.gru else "LSTM"
    print(f"UCF11-shaped moving shapes: {train_len} training and {test_len} test clips of {kcp.data.FRAMES} frames "
          f"of 160x120x3, {kcp.data.CLASSES} classes")
    print(f"{kind}, hidden {HIDDEN}, input weight {args.format}, batch {args.batch}, Adam lr {args.lr}, "
          f"{args.epochs} epochs, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    start = time.perf_counter()
    train_set, test_set = kcp.data.Clips("train", train_len), kcp.data.Clips("test", test_len)
    print(f"  generated the clips in {time.perf_counter() - start:.1f} s")

    compressed, dense = models(args)
    rows = []
    for name, model in [(args.format.upper(), compressed), ("dense", dense)]:
        if name == "dense" and args.kcp_only:
            continue
        print(f"{name}:")
        curve = train(model, train_set, test_set, args)
        rows.append((name, model, curve))

    dense_ih = kcp.data.FRAME * (3 if args.gru else 4) * HIDDEN
    print(f"\n| {kind} | W_ih parameters | model parameters | compression (W_ih) | test accuracy | s per epoch "
          "| us per frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, model, curve in rows:
        inputs = model.recurrent.input if name != "dense" else None
        ih = sum(c.numel() for c in inputs.cores) if inputs is not None else dense_ih
        everything = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {ih} | {everything} | {dense_ih / ih:.0f}x | {100 * curve[-1][1]:.1f}% | "
              f"{statistics.median(c[2] for c in curve):.1f} | {frame_time_us(model, test_set):.1f} |")
    print(f"\nchance: {100 / kcp.data.CLASSES:.1f}%")


if __name__ == "__main__":
    main()
