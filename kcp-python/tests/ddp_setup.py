"""The model and data of the distributed test, shared by the test and its worker processes."""

import torch

import kcp.torch

ROWS, STEPS, LR = 64, 5, 0.1


def model():
    """A small model with a KCP layer and a TT layer, the same on every process (seeded)."""
    torch.manual_seed(3)
    return torch.nn.Sequential(
        kcp.torch.Linear([4, 6, 5], [4, 4, 2], format="kcp", rank=3),
        torch.nn.Tanh(),
        kcp.torch.Linear([8, 4], [3, 2], format="tt", ranks=[1, 2, 1]),
    )


def data():
    """The whole batch: x [ROWS, 120] and its targets [ROWS, 6]."""
    generator = torch.Generator().manual_seed(4)
    return torch.randn(ROWS, 120, generator=generator), torch.randn(ROWS, 6, generator=generator)


def train(module, x, target):
    """STEPS steps of SGD on the mean squared error."""
    optimiser = torch.optim.SGD(module.parameters(), lr=LR)
    for _ in range(STEPS):
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(module(x), target).backward()
        optimiser.step()
