"""kcp.Layer against a dense float64 reference of the same weight (reference.py, written from
docs/formats.md), forward and backward, every format, shapes with modes of size 1; then the
bad inputs, each a ValueError or TypeError."""

import os

import numpy as np
import pytest
import torch

import kcp
from reference import dense

# Every format, with modes of size 1 among the shapes.
CASES = [
    ("kcp", [3, 1, 2], [2, 2, 1], dict(rank=3)),
    ("kcp", [4], [5], dict(rank=2)),
    ("cp", [2, 3], [3, 1], dict(rank=2)),
    ("tt", [2, 1, 3], [2, 2, 2], dict(ranks=[1, 2, 3, 1])),
    ("tr", [2, 3], [2, 2], dict(ranks=[2, 3, 1, 2])),
    ("bt", [2, 3], [2, 2], dict(blocks=2, ranks=[2, 3])),
    ("ht", [2, 1, 3], [2, 2, 1], dict(rank=2)),
    ("ht", [3, 2], [1, 2], dict(rank=3)),
]


def random_shapes(seed):
    """A KCP, TT or CP layer of random modes (1 to 4 of them, sizes 1 to 4) and ranks."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 4))
    n = [int(v) for v in rng.integers(1, 5, size=d)]
    m = [int(v) for v in rng.integers(1, 5, size=d)]
    format = ["kcp", "tt", "cp"][seed % 3]
    if format == "tt":
        keys = dict(ranks=[1] + [int(v) for v in rng.integers(1, 4, size=d - 1)] + [1])
    else:
        keys = dict(rank=int(rng.integers(1, 5)))
    return format, n, m, keys


ALL = CASES + [random_shapes(seed) for seed in range(12)]


def case_id(case):
    format, n, m, keys = case
    return f"{format}-{'x'.join(map(str, n))}-{'x'.join(map(str, m))}"


def relative_error(got, want):
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / max(np.linalg.norm(want), 1e-30))


@pytest.mark.parametrize("case", ALL, ids=case_id)
@pytest.mark.parametrize("bias", [False, True])
def test_forward_and_backward_match_the_dense_reference(case, bias):
    format, n, m, keys = case
    layer = kcp.Layer(n, m, format=format, bias=bias, **keys)
    rng = np.random.default_rng(7)
    cores = [c + np.float32(0.1) for c in layer.random_cores(seed=3)]
    b = rng.standard_normal(layer.out_features).astype(np.float32) if bias else None
    rows = 5
    x = rng.standard_normal((rows, layer.in_features)).astype(np.float32)
    dy = rng.standard_normal((rows, layer.out_features)).astype(np.float32)
    d, M, N = len(n), layer.out_features, layer.in_features

    # Forward: NumPy float64.
    w = dense(np.einsum, format, d, layer.core_names, [c.astype(np.float64) for c in cores], M, N)
    want = x.astype(np.float64) @ w.T + (b.astype(np.float64) if bias else 0.0)
    assert relative_error(layer.forward(x, cores, b), want) < 1e-5

    # Backward: torch autograd through the float64 einsum, cores as leaves.
    leaves = [torch.tensor(c, dtype=torch.float64, requires_grad=True) for c in cores]
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True) if bias else None
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = dense(torch.einsum, format, d, layer.core_names, leaves, M, N)
    y = tx @ tw.T + (tb if bias else 0.0)
    (y * torch.tensor(dy, dtype=torch.float64)).sum().backward()
    dx, dcores, dbias = layer.backward(x, dy, cores, b, dx=True)
    assert relative_error(dx, tx.grad.numpy()) < 1e-5
    for name, got, leaf in zip(layer.core_names, dcores, leaves):
        assert got.shape == leaf.shape, name
        assert relative_error(got, leaf.grad.numpy()) < 1e-4, name
    if bias:
        assert relative_error(dbias, tb.grad.numpy()) < 1e-5
    else:
        assert dbias is None
    # Without dx: the same core gradients, no dx.
    no_dx, dcores2, _ = layer.backward(x, dy, cores, b)
    assert no_dx is None
    for got, leaf in zip(dcores2, leaves):
        assert relative_error(got, leaf.grad.numpy()) < 1e-4
    # The training forward pass: the same y, and its trace gives the same gradients.
    for want_dx in (True, False):
        y_train, trace = layer.forward_train(x, cores, b, dx=want_dx)
        assert np.array_equal(y_train, layer.forward(x, cores, b))
        kept = trace.backward(dy)
        again = layer.backward(x, dy, cores, b, dx=want_dx)
        assert (kept[0] is None) == (not want_dx) and (want_dx is False or np.array_equal(kept[0], again[0]))
        assert all(np.array_equal(k, a) for k, a in zip(kept[1], again[1]))


def test_layer_reports_its_plan_and_sizes():
    layer = kcp.Layer([8, 20, 20, 18], [4, 4, 4, 16], format="kcp", rank=4, bias=True)
    assert layer.core_names == ["factor.0", "factor.1", "factor.2", "factor.3"]
    assert layer.core_shapes == [(4, 4, 8), (4, 4, 20), (4, 4, 20), (4, 16, 18)]
    assert layer.params == 1920 and layer.in_features == 57600 and layer.out_features == 1024
    # The plan's MACs per row, and the plan text whose steps sum to them.
    assert layer.macs == 1216512
    assert "total 1216512 MACs" in layer.plan


def test_plan_is_the_command_line_json():
    plan = kcp.plan([8, 20, 20, 18], [4, 4, 4, 16], format="tt", ranks=[1, 4, 4, 4, 1], backward=True)
    assert plan["format"] == "tt" and plan["ranks"] == [1, 4, 4, 4, 1]
    assert plan["in_shape"] == [8, 20, 20, 18] and plan["out_shape"] == [4, 4, 4, 16]
    assert plan["macs"] == plan["candidates"]["optimal"]
    assert [c["name"] for c in plan["cores"]] == ["core.0", "core.1", "core.2", "core.3"]
    assert plan["backward"]["macs"] > 0
    assert set(kcp.formats()) == {"kcp", "cp", "tt", "tr", "bt", "ht"}


def test_threads_and_layouts_give_the_same_values():
    layer = kcp.Layer([4, 6, 5], [4, 4, 2], rank=3)
    cores = layer.random_cores(seed=1)
    x = np.random.default_rng(2).standard_normal((64, layer.in_features)).astype(np.float32)
    one = layer.forward(x, cores, threads=1)
    assert np.array_equal(one, layer.forward(x, cores, threads=2))
    assert np.array_equal(one, layer.forward(x, cores))
    # A float32 array of another layout is copied into C order: the same result.
    fortran = np.asfortranarray(x)
    assert np.array_equal(one, layer.forward(fortran, cores))
    # The gradients are the same bits on any number of threads.
    dy = np.ones_like(one)
    _, g1, _ = layer.backward(x, dy, cores, threads=1)
    _, g2, _ = layer.backward(x, dy, cores, threads=2)
    assert all(np.array_equal(a, b) for a, b in zip(g1, g2))


def test_bad_input_is_a_value_or_type_error():
    layer = kcp.Layer([4, 3], [2, 2], rank=2, bias=True)
    cores, b = layer.random_cores(), np.zeros(4, np.float32)
    x = np.ones((2, 12), np.float32)
    with pytest.raises(TypeError, match="float32"):
        layer.forward(x.astype(np.float64), cores, b)
    with pytest.raises(TypeError, match="ndarray"):
        layer.forward([[1.0] * 12], cores, b)
    with pytest.raises(ValueError, match="12 columns"):
        layer.forward(np.ones((2, 11), np.float32), cores, b)
    with pytest.raises(ValueError, match="matrix"):
        layer.forward(np.ones(12, np.float32), cores, b)
    with pytest.raises(ValueError, match="factor.1 must have shape"):
        layer.forward(x, [cores[0], cores[1][:, :, :2].copy()], b)
    with pytest.raises(ValueError, match="2 cores"):
        layer.forward(x, cores[:1], b)
    with pytest.raises(ValueError, match="has a bias"):
        layer.forward(x, cores)
    with pytest.raises(ValueError, match="threads"):
        layer.forward(x, cores, b, threads=0)
    with pytest.raises(ValueError, match="dy must have shape"):
        layer.backward(x, np.ones((3, 4), np.float32), cores, b)
    _, trace = layer.forward_train(x, cores, b)
    with pytest.raises(ValueError, match="dy must have shape"):
        trace.backward(np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="float32"):
        trace.backward(np.ones((2, 4)))
    with pytest.raises(ValueError, match="w must have shape"):
        layer.compress(np.ones((4, 11), np.float32))
    with pytest.raises(ValueError, match="cell"):
        layer.load_cell("x.safetensors", "rnn")
    with pytest.raises(ValueError, match="unknown format"):
        kcp.Layer([4], [2], format="svd", rank=2)
    with pytest.raises(ValueError, match="needs ranks="):
        kcp.Layer([4, 3], [2, 2], format="tt")
    with pytest.raises(ValueError, match="takes no rank="):
        kcp.Layer([4, 3], [2, 2], format="tt", rank=2, ranks=[1, 2, 1])
    with pytest.raises(ValueError, match="rank"):
        kcp.Layer([4, 3], [2, 2], rank=0)
    with pytest.raises(ValueError, match="modes"):
        kcp.Layer([4, 3], [2], rank=2)
    with pytest.raises(ValueError, match="negative"):
        kcp.Layer([4, -3], [2, 2], rank=2)
    with pytest.raises(TypeError, match="integer"):
        kcp.Layer([4, 3.5], [2, 2], rank=2)


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "8516be0")
FIXTURE_LAYERS = [
    ("kcp", dict(rank=2)),
    ("cp", dict(rank=3)),
    ("tt", dict(ranks=[1, 2, 1])),
    ("tr", dict(ranks=[2, 2, 2, 2])),
    ("bt", dict(blocks=2, ranks=[2, 2])),
    ("ht", dict(rank=2)),
]


@pytest.mark.parametrize("format,keys", FIXTURE_LAYERS, ids=[f for f, _ in FIXTURE_LAYERS])
def test_weight_files_of_the_rust_crate_load_and_compute_what_they_did(format, keys, tmp_path):
    # Files the Rust crate wrote (tests/fixtures/8516be0: in [4, 3], out [2, 3], with bias),
    # with the outputs the Rust layers gave for x.
    layer = kcp.Layer([4, 3], [2, 3], format=format, bias=True, **keys)
    cores, bias = layer.load_weights(os.path.join(FIXTURES, f"{format}.safetensors"))
    x = np.load(os.path.join(FIXTURES, "x.npy")).reshape(-1, 12)
    want = np.load(os.path.join(FIXTURES, f"{format}_y.npy")).reshape(-1, 6)
    assert np.allclose(layer.forward(x, cores, bias), want, rtol=1e-5, atol=1e-6)
    # Saved again and read back: the same values.
    path = tmp_path / "again.safetensors"
    layer.save_weights(path, cores, bias)
    again, again_bias = layer.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(cores, again)) and np.array_equal(bias, again_bias)


def test_weight_file_errors(tmp_path):
    layer = kcp.Layer([4, 3], [2, 3], rank=2, bias=True)
    with pytest.raises(OSError):
        layer.load_weights(tmp_path / "missing.safetensors")
    # A file of another layer: a ValueError naming what is wrong; nothing written on bad cores.
    other = kcp.Layer([4, 3], [2, 3], rank=3, bias=True)
    other.save_weights(tmp_path / "r3.safetensors", other.random_cores(), np.zeros(6, np.float32))
    with pytest.raises(ValueError, match="factor"):
        layer.load_weights(tmp_path / "r3.safetensors")
    with pytest.raises(ValueError, match="shape"):
        layer.save_weights(tmp_path / "bad.safetensors", other.random_cores(), np.zeros(6, np.float32))
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(TypeError, match="path"):
        layer.load_weights(3)
