"""The einsum engine (the plan's steps as torch operations, what runs off the CPU) against the
float64 einsum reference and against kcp's kernels; the routing between them; the trace the
kernels' forward pass keeps for the backward pass; torch.compile."""

import numpy as np
import pytest
import torch

import kcp
import kcp.torch
from test_torch import CASES, reference


def gradients(module, x, dy):
    """y and the gradients of sum(y * dy): x's (if it requires one), the cores', the bias'."""
    module.zero_grad()
    x = x.detach().requires_grad_(x.requires_grad)
    y = module(x)
    (y * dy).sum().backward()
    grads = [c.grad.clone() for c in module.cores]
    grads += [] if module.bias is None else [module.bias.grad.clone()]
    grads += [] if x.grad is None else [x.grad.clone()]
    return y.detach(), grads


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
@pytest.mark.parametrize("bias", [True, False])
def test_einsum_engine_matches_the_dense_reference_in_float64(case, bias):
    format, n, m, keys = case
    torch.manual_seed(2)
    module = kcp.torch.Linear(n, m, format=format, bias=bias, **keys).double()
    x = torch.randn(4, module.in_features, dtype=torch.float64, requires_grad=True)
    y = module(x)  # float64 on the CPU: the einsum engine
    dy = torch.randn_like(y)
    (y * dy).sum().backward()
    x64 = x.detach().clone().requires_grad_()
    want, cores, bias64 = reference(module, x64)
    (want * dy).sum().backward()
    assert torch.allclose(y, want, rtol=1e-10, atol=1e-12)
    assert torch.allclose(x.grad, x64.grad, rtol=1e-10, atol=1e-12)
    for core, leaf in zip(module.cores, cores):
        assert torch.allclose(core.grad, leaf.grad, rtol=1e-10, atol=1e-12)
    if bias:
        assert torch.allclose(module.bias.grad, bias64.grad)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
@pytest.mark.parametrize("dx", [True, False])
def test_forced_einsum_engine_matches_the_kernels(case, dx):
    format, n, m, keys = case
    torch.manual_seed(3)
    module = kcp.torch.Linear(n, m, format=format, **keys)
    x = torch.randn(2, 5, module.in_features, requires_grad=dx)
    dy = torch.randn(2, 5, module.out_features)
    y_kernels, g_kernels = gradients(module, x, dy)
    module.engine = "torch"
    y_torch, g_torch = gradients(module, x, dy)
    assert torch.allclose(y_kernels, y_torch, rtol=1e-5, atol=1e-6)
    assert len(g_kernels) == len(g_torch) == len(module.cores) + 1 + dx
    for a, b in zip(g_kernels, g_torch):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_einsum_steps_follow_the_plan():
    layer = kcp.Layer([8, 20, 20, 18], [4, 4, 4, 16], rank=4)
    steps = layer.einsum_steps
    # The UCF11 layer's plan: x meets A2, then A3, A1, A4 (see layer.plan), one step each.
    assert [inputs for _, inputs, _ in steps] == [
        [("x", 0), ("core", 1)], [("temp", 0), ("core", 2)], [("temp", 1), ("core", 0)], [("temp", 2), ("core", 3)]]
    assert [out for _, _, out in steps] == [("temp", 0), ("temp", 1), ("temp", 2), ("y", 0)]
    assert all(equation.count(",") == 1 for equation, _, _ in steps)


def test_another_device_runs_the_einsum_engine():
    # The meta device (shapes only) stands in for a GPU: the module moves and runs unchanged.
    module = kcp.torch.Linear([8, 20, 20, 18], [4, 4, 4, 16], rank=4).to("meta")
    y = module(torch.empty(3, 57600, device="meta"))
    assert y.device.type == "meta" and y.shape == (3, 1024)
    lstm = kcp.torch.LSTM([4, 3], [4, 3], 3, rank=2).to("meta")
    out, (h, c) = lstm(torch.empty(5, 2, 12, device="meta"))
    assert out.shape == (5, 2, 3) and h.shape == c.shape == (1, 2, 3)
    module.engine = "kernels"
    with pytest.raises(ValueError, match="float32 CPU"):
        module(torch.empty(3, 57600, device="meta"))


def test_the_kernels_keep_the_forward_pass_for_the_backward_pass():
    torch.manual_seed(4)
    module = kcp.torch.Linear([4, 6], [3, 4], format="tt", ranks=[1, 3, 1])
    x = torch.randn(7, 24, requires_grad=True)
    y = module(x)
    dy = torch.randn_like(y)
    y.backward(dy, retain_graph=True)
    first = [c.grad.clone() for c in module.cores] + [x.grad.clone()]
    module.zero_grad()
    x.grad = None
    y.backward(dy)  # the trace serves a second backward pass
    assert all(torch.equal(a, b) for a, b in zip(first, [c.grad for c in module.cores] + [x.grad]))
    # The NumPy layer's recomputing backward gives the same bits.
    cores = [c.detach().numpy() for c in module.cores]
    dx, dcores, _ = module.layer.backward(x.detach().numpy(), dy.numpy(), cores, module.bias.detach().numpy(),
                                          dx=True, threads=module.threads)
    assert torch.equal(torch.from_numpy(dx), first[-1])
    assert all(torch.equal(torch.from_numpy(a), b) for a, b in zip(dcores, first))
    # A batch whose forward intermediates exceed what a pass keeps (16 MiB; the UCF11 layer
    # keeps 184 KB per row) is run again by the backward pass: the same gradients.
    big = kcp.Layer([8, 20, 20, 18], [4, 4, 4, 16], rank=4)
    cores = big.random_cores(seed=1)
    xs = torch.randn(100, 57600).numpy()
    dys = torch.randn(100, 1024).numpy()
    _, trace = big.forward_train(xs, cores, dx=True)
    kept, again = trace.backward(dys), big.backward(xs, dys, cores, dx=True)
    assert np.array_equal(kept[0], again[0]) and all(np.array_equal(a, b) for a, b in zip(kept[1], again[1]))
    # x changed in place after the forward pass: autograd refuses the backward pass.
    x2 = torch.randn(7, 24)
    y2 = module(x2)
    x2.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y2.sum().backward()


@pytest.mark.parametrize("engine", ["auto", "torch"])
@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_torch_compile(engine, backend):
    # A model with a kcp layer compiles (the kernels' call a graph break) and computes the
    # same values and gradients as run eagerly.
    torch.manual_seed(6)
    model = torch.nn.Sequential(kcp.torch.Linear([4, 6], [3, 4], rank=3, engine=engine), torch.nn.Tanh(),
                                torch.nn.Linear(12, 2))
    x = torch.randn(5, 24)
    want = model(x)
    want.square().sum().backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend=backend)
    got = compiled(x)
    got.square().sum().backward()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    for p, g in zip(model.parameters(), want_grads):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)


def test_bound_weights_follow_every_change_of_the_parameters():
    # The module binds the parameters' values once and binds them again when any changes:
    # in place (an optimiser's step, copy_), by load_state_dict, or by a new tensor.
    torch.manual_seed(10)
    module = kcp.torch.Linear([4, 6], [3, 4], format="tr", ranks=[2, 2, 2, 2])
    x = torch.randn(3, 24)

    def check():
        with torch.no_grad():
            want = reference(module, x.double())[0]
            assert torch.allclose(module(x).double(), want, rtol=1e-4, atol=1e-5)

    check()
    with torch.no_grad():
        module.cores[1].mul_(2.0)
    check()
    other = kcp.torch.Linear([4, 6], [3, 4], format="tr", ranks=[2, 2, 2, 2])
    module.load_state_dict(other.state_dict())
    check()
    module.cores[0].data = torch.randn_like(module.cores[0])
    check()
    optimiser = torch.optim.SGD(module.parameters(), lr=0.1)
    module(x).square().sum().backward()
    optimiser.step()
    check()
