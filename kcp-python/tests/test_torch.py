"""kcp.torch.Linear against torch autograd through a float64 einsum of the same cores
(reference.py), and as a module: parameters, state_dict, training, errors."""

import numpy as np
import pytest
import torch

import kcp.torch
from reference import dense

CASES = [
    ("kcp", [3, 1, 4], [2, 2, 1], dict(rank=3)),
    ("tt", [2, 3], [3, 2], dict(ranks=[1, 3, 1])),
    ("cp", [2, 3], [3, 1], dict(rank=2)),
    ("tr", [2, 3], [2, 2], dict(ranks=[2, 3, 1, 2])),
    ("bt", [2, 3], [2, 2], dict(blocks=2, ranks=[2, 3])),
    ("ht", [2, 1, 3], [2, 2, 1], dict(rank=2)),
]


def reference(module, x):
    """y of the module's parameters through the float64 einsum, with autograd to them."""
    format, d = module.layer.format, len(module.layer.in_shape)
    cores = [c.detach().double().requires_grad_() for c in module.cores]
    bias = module.bias.detach().double().requires_grad_() if module.bias is not None else None
    w = dense(torch.einsum, format, d, module.core_names, cores, module.out_features, module.in_features)
    y = x @ w.T + (bias if bias is not None else 0.0)
    return y, cores, bias


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_linear_matches_autograd_through_the_dense_reference(case):
    format, n, m, keys = case
    torch.manual_seed(0)
    module = kcp.torch.Linear(n, m, format=format, bias=True, **keys)
    x = torch.randn(2, 3, module.in_features, requires_grad=True)  # batch dimensions [2, 3]
    y = module(x)
    assert y.shape == (2, 3, module.out_features) and y.dtype == torch.float32
    dy = torch.randn_like(y)
    (y * dy).sum().backward()

    x64 = x.detach().double().requires_grad_()
    want, cores, bias = reference(module, x64)
    (want * dy.double()).sum().backward()
    assert torch.allclose(y.double(), want, rtol=1e-4, atol=1e-5)
    assert torch.allclose(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-5)
    for core, leaf in zip(module.cores, cores):
        assert torch.allclose(core.grad.double(), leaf.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(module.bias.grad.double(), bias.grad, rtol=1e-4, atol=1e-5)


def test_dx_only_when_x_needs_it_and_no_bias():
    module = kcp.torch.Linear([4, 3], [2, 2], rank=2, bias=False)
    assert module.bias is None and [name for name, _ in module.named_parameters()] == [
        "cores.0", "cores.1"]
    x = torch.randn(5, 12)
    module(x).square().sum().backward()
    assert x.grad is None
    assert all(c.grad is not None for c in module.cores)


def test_parameters_state_dict_and_core_names():
    module = kcp.torch.Linear([8, 20, 20, 18], [4, 4, 4, 16], rank=4)
    assert module.core_names == ["factor.0", "factor.1", "factor.2", "factor.3"]
    assert [tuple(c.shape) for c in module.cores] == [(4, 4, 8), (4, 4, 20), (4, 4, 20), (4, 16, 18)]
    assert sum(p.numel() for p in module.parameters()) == 1920 + 1024
    copy = kcp.torch.Linear([8, 20, 20, 18], [4, 4, 4, 16], rank=4)
    copy.load_state_dict(module.state_dict())
    x = torch.randn(2, 57600)
    assert torch.equal(module(x), copy(x))


def test_a_model_trains():
    # Fit a layer to the outputs of another of the same format: the loss falls by 10x.
    torch.manual_seed(1)
    teacher = kcp.torch.Linear([4, 6], [3, 4], format="tt", ranks=[1, 3, 1])
    student = torch.nn.Sequential(kcp.torch.Linear([4, 6], [3, 4], format="tt", ranks=[1, 3, 1]))
    optimiser = torch.optim.Adam(student.parameters(), lr=0.05)
    x = torch.randn(256, 24)
    with torch.no_grad():
        target = teacher(x)
    losses = []
    for _ in range(200):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(student(x), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_bad_input_is_a_value_or_type_error():
    module = kcp.torch.Linear([4, 3], [2, 2], rank=2)
    with pytest.raises(TypeError, match="float32"):
        module(torch.randn(2, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[\.\.\., 12\]"):
        module(torch.randn(2, 11))
    with pytest.raises(ValueError, match="meta"):
        module(torch.empty(2, 12, device="meta"))  # the parameters are on the CPU
    with pytest.raises(ValueError, match="engine must be one of"):
        module.engine = "gpu"
    with pytest.raises(ValueError, match="engine must be one of"):
        kcp.torch.Linear([4, 3], [2, 2], rank=2, engine=None)
    with pytest.raises(TypeError, match="Tensor"):
        module(np.ones((2, 12), np.float32))
    with pytest.raises(ValueError, match="needs rank="):
        kcp.torch.Linear([4, 3], [2, 2])


def test_save_file_and_load_file_round_trip(tmp_path):
    module = kcp.torch.Linear([4, 6], [3, 4], format="bt", blocks=2, ranks=[2, 2])
    path = tmp_path / "bt.safetensors"
    module.save_file(path)
    other = kcp.torch.Linear([4, 6], [3, 4], format="bt", blocks=2, ranks=[2, 2])
    x = torch.randn(3, 24)
    assert not torch.equal(module(x), other(x))
    other.load_file(path)
    assert torch.equal(module(x), other(x))
    # The same file through the NumPy layer (the names the Rust crate uses).
    cores, bias = module.layer.load_weights(path)
    assert all(np.array_equal(c, p.detach().numpy()) for c, p in zip(cores, module.cores))


def torch_twin(ours, kind, format, batch_first=False):
    """nn.LSTM / nn.GRU with our cell's weights, weight_ih_l0 the dense W of its cores."""
    cell = ours.input
    theirs = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(cell.in_features, ours.hidden_size,
                                                               batch_first=batch_first)
    with torch.no_grad():
        d = len(cell.layer.in_shape)
        w = dense(torch.einsum, format, d, cell.core_names, list(cell.cores), cell.out_features, cell.in_features)
        theirs.weight_ih_l0.copy_(w)
        theirs.weight_hh_l0.copy_(ours.weight_hh_l0)
        theirs.bias_ih_l0.copy_(ours.bias_ih_l0)
        theirs.bias_hh_l0.copy_(ours.bias_hh_l0)
    return theirs


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_cells_match_torch_with_the_dense_input_weight(kind, batch_first):
    # nn.LSTM / nn.GRU with weight_ih_l0 the dense W of the cores: the same outputs, final
    # state and gradients.
    torch.manual_seed(5)
    hidden, gates = 3, 4 if kind == "lstm" else 3
    make = kcp.torch.LSTM if kind == "lstm" else kcp.torch.GRU
    ours = make([4, 3], [gates, hidden], hidden, format="kcp", rank=2, batch_first=batch_first)
    theirs = torch_twin(ours, kind, "kcp", batch_first)
    steps, batch = 5, 2
    x = torch.randn((batch, steps, 12) if batch_first else (steps, batch, 12))
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, state = ours(x_ours)
    want, want_state = theirs(x_theirs)
    assert torch.allclose(out, want, atol=1e-5)
    states = state if kind == "lstm" else (state,)
    want_states = want_state if kind == "lstm" else (want_state,)
    for s, w_s in zip(states, want_states):
        assert s.shape == w_s.shape and torch.allclose(s, w_s, atol=1e-5)
    dout = torch.randn_like(out)
    (out * dout).sum().backward()
    (want * dout).sum().backward()
    assert torch.allclose(x_ours.grad, x_theirs.grad, atol=1e-5)
    assert torch.allclose(ours.weight_hh_l0.grad, theirs.weight_hh_l0.grad, atol=1e-5)
    assert torch.allclose(ours.bias_hh_l0.grad, theirs.bias_hh_l0.grad, atol=1e-5)
    assert torch.allclose(ours.bias_ih_l0.grad, theirs.bias_ih_l0.grad, atol=1e-5)
    # The cores' gradients: dW (torch's) pulled back through the einsum.
    cores = [c.detach().clone().requires_grad_() for c in ours.input.cores]
    w = dense(torch.einsum, "kcp", 2, ours.input.core_names, cores, gates * hidden, 12)
    (w * theirs.weight_ih_l0.grad).sum().backward()
    for got, leaf in zip(ours.input.cores, cores):
        assert torch.allclose(got.grad, leaf.grad, atol=1e-4)


def test_cell_bad_input():
    with pytest.raises(ValueError, match="4 x hidden"):
        kcp.torch.LSTM([4, 3], [3, 3], 3, rank=2)
    lstm = kcp.torch.LSTM([4, 3], [4, 3], 3, rank=2)
    with pytest.raises(ValueError, match=r"\[T, B, N\]"):
        lstm(torch.randn(5, 12))
    with pytest.raises(ValueError, match="hidden"):
        kcp.torch.GRU([4, 3], [3, 3], 0, rank=2)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cells_compute_the_same_on_any_number_of_threads(kind):
    # A recurrence wide enough for kcp to cut each step's rows into blocks per thread (hidden
    # 64, 24 rows): the same values and gradients, to the bit, on one thread and on three.
    torch.manual_seed(3)
    hidden, gates = 64, 4 if kind == "lstm" else 3
    make = kcp.torch.LSTM if kind == "lstm" else kcp.torch.GRU
    x = torch.randn(3, 24, 12)
    results = []
    for threads in (1, 3):
        torch.manual_seed(4)
        module = make([4, 3], [gates * 4, 16], hidden, format="kcp", rank=2, threads=threads)
        out, _ = module(x)
        (out * torch.linspace(-1, 1, hidden)).sum().backward()
        results.append([out.detach()] + [p.grad for p in module.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("engine", ["auto", "torch"])
@pytest.mark.parametrize("batch", [3, 6])
def test_cells_from_a_given_state_match_torch_through_every_output(kind, engine, batch):
    # An initial state that needs gradients, and a loss on the output and the final state: the
    # same values and gradients as nn.LSTM / nn.GRU (kcp's recurrence on the CPU, torch's with
    # engine="torch").
    torch.manual_seed(11)
    hidden, gates = 4, 4 if kind == "lstm" else 3
    make = kcp.torch.LSTM if kind == "lstm" else kcp.torch.GRU
    ours = make([4, 3], [gates, hidden], hidden, format="tt", ranks=[1, 3, 1], engine=engine)
    theirs = torch_twin(ours, kind, "tt")
    steps = 6
    x = torch.randn(steps, batch, 12)
    states = [torch.randn(1, batch, hidden) for _ in range(2 if kind == "lstm" else 1)]
    results = []
    for module in (ours, theirs):
        module.zero_grad()
        xs = x.clone().requires_grad_()
        s0 = [s.clone().requires_grad_() for s in states]
        out, final = module(xs, tuple(s0) if kind == "lstm" else s0[0])
        finals = final if kind == "lstm" else (final,)
        loss = (out * torch.linspace(-1, 1, hidden)).sum() + sum((f * (k + 2)).sum() for k, f in enumerate(finals))
        loss.backward()
        results.append([out, *finals, xs.grad, *[s.grad for s in s0], module.weight_hh_l0.grad,
                         module.bias_hh_l0.grad])
    for got, want in zip(*results):
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_modules_copy_and_pickle(tmp_path):
    import copy

    torch.manual_seed(12)
    model = torch.nn.Sequential(kcp.torch.Linear([4, 3], [4, 2], format="tr", ranks=[2, 2, 2, 2]))
    lstm = kcp.torch.LSTM([4, 3], [4, 2], 2, rank=2)
    x = torch.randn(3, 12)
    model(x)  # binds its weights
    for original, run in [(model, lambda m: m(x)), (lstm, lambda m: m(x.reshape(3, 1, 12))[0])]:
        twin = copy.deepcopy(original)
        assert torch.equal(run(twin), run(original))
        path = tmp_path / "model.pt"
        torch.save(original, path)
        loaded = torch.load(path, weights_only=False)
        assert torch.equal(run(loaded), run(original))
        # The copy's parameters are its own.
        with torch.no_grad():
            next(twin.parameters()).add_(1.0)
        assert not torch.equal(run(twin), run(original))
