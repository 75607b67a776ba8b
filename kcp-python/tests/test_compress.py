"""kcp.torch.compress (a kcp module from PyTorch's nn.Linear, nn.LSTM, nn.GRU) and the
recurrent layers' weight files (the Rust recurrent layers' names)."""

import os

import numpy as np
import pytest
import torch

import kcp.torch
from reference import dense
from test_numpy import FIXTURES


def fitted_weight(module):
    """The dense weight of a Linear's cores, through the independent einsum reference."""
    cores = [c.detach().double() for c in module.cores]
    d = len(module.layer.in_shape)
    return dense(torch.einsum, module.layer.format, d, module.core_names, cores, module.out_features,
                 module.in_features)


def test_a_linear_fitted_by_tt_svd_at_full_rank_is_the_linear():
    torch.manual_seed(7)
    linear = torch.nn.Linear(24, 6)
    # in [2, 3, 4], out [3, 1, 2]: ranks 6 and 8 hold any weight exactly.
    ours = kcp.torch.compress(linear, [2, 3, 4], [3, 1, 2], format="tt", ranks=[1, 6, 8, 1])
    assert isinstance(ours, kcp.torch.Linear) and ours.relative_error < 1e-5
    x = torch.randn(5, 24)
    assert torch.allclose(ours(x), linear(x), atol=1e-5)
    assert torch.allclose(ours.bias, linear.bias)


@pytest.mark.parametrize("format", ["kcp", "cp"])
def test_an_als_fit_reports_its_error_and_improves_with_rank(format):
    torch.manual_seed(8)
    linear = torch.nn.Linear(24, 6, bias=False)
    errors = []
    for rank in (1, 3, 6):
        ours = kcp.torch.compress(linear, [2, 3, 4], [3, 1, 2], format=format, rank=rank, iters=200)
        assert ours.bias is None
        w = linear.weight.detach().double()
        measured = (torch.linalg.norm(w - fitted_weight(ours)) / torch.linalg.norm(w)).item()
        assert abs(measured - ours.relative_error) < 1e-4, (measured, ours.relative_error)
        errors.append(ours.relative_error)
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_cell_fitted_exactly_is_the_cell(kind):
    torch.manual_seed(9)
    hidden, gates = 2, 4 if kind == "lstm" else 3
    cell = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(12, hidden, batch_first=True)
    # out [gates, 2] = gates x hidden; in [4, 3]; ranks [1, min(4 gates, 6), 1] hold any weight.
    ours = kcp.torch.compress(cell, [4, 3], [gates, 2], format="tt", ranks=[1, min(4 * gates, 6), 1])
    assert type(ours).__name__ == kind.upper() and ours.batch_first and ours.relative_error < 1e-5
    x = torch.randn(3, 5, 12)
    got, want = ours(x), cell(x)
    assert torch.allclose(got[0], want[0], atol=1e-5)


def test_compress_bad_input():
    with pytest.raises(TypeError, match="nn.Linear, nn.LSTM or nn.GRU"):
        kcp.torch.compress(torch.nn.Conv1d(1, 1, 1), [2], [2], rank=1)
    with pytest.raises(ValueError, match="multiply to 12 and 4"):
        kcp.torch.compress(torch.nn.Linear(24, 6), [4, 3], [2, 2], rank=2)
    with pytest.raises(ValueError, match="not tr"):
        kcp.torch.compress(torch.nn.Linear(12, 4), [4, 3], [2, 2], format="tr", ranks=[2, 2, 2, 2])
    with pytest.raises(ValueError, match="num_layers=2"):
        kcp.torch.compress(torch.nn.LSTM(12, 1, num_layers=2), [4, 3], [2, 2], rank=2)
    with pytest.raises(ValueError, match="rank 50 is more than"):
        kcp.torch.compress(torch.nn.Linear(12, 4), [4, 3], [2, 2], rank=50)


def test_an_lstm_the_rust_crate_wrote_loads_and_runs_as_it_did():
    # tests/fixtures/8516be0/lstm.safetensors: in [4, 3] -> out [4, 2], hidden 2, KCP rank 2,
    # with the Rust layer's hidden states on x [T = 3, B = 1, N = 12].
    lstm = kcp.torch.LSTM([4, 3], [4, 2], 2, rank=2).load_file(os.path.join(FIXTURES, "lstm.safetensors"))
    x = torch.from_numpy(np.load(os.path.join(FIXTURES, "x.npy")).reshape(3, 1, 12))
    out, _ = lstm(x)
    assert np.allclose(out.detach().numpy(), np.load(os.path.join(FIXTURES, "lstm_h.npy")), atol=1e-6)


@pytest.mark.parametrize("make", [kcp.torch.LSTM, kcp.torch.GRU], ids=["lstm", "gru"])
def test_cell_files_round_trip(tmp_path, make):
    gates = make.gates
    saved = make([4, 3], [gates, 3], 3, format="tt", ranks=[1, 2, 1])
    path = tmp_path / "cell.safetensors"
    saved.save_file(path)
    loaded = make([4, 3], [gates, 3], 3, format="tt", ranks=[1, 2, 1]).load_file(path)
    x = torch.randn(4, 2, 12)
    assert torch.equal(saved(x)[0], loaded(x)[0])
    # The names of the Rust recurrent layers' files.
    cores, bias_ih, weight_hh, bias_hh = saved.input.layer.load_cell(path, make.cell)
    assert np.array_equal(weight_hh, saved.weight_hh_l0.detach().numpy())
    # A file of the other cell kind, or of another layer, is refused; nothing is written on error.
    with pytest.raises(ValueError):
        make([4, 3], [gates, 3], 3, format="tt", ranks=[1, 3, 1]).load_file(path)
    unbiased = make([4, 3], [gates, 3], 3, format="tt", ranks=[1, 2, 1], bias=False)
    with pytest.raises(ValueError, match="biases"):
        unbiased.save_file(tmp_path / "none.safetensors")
    assert not (tmp_path / "none.safetensors").exists()
    with pytest.raises(OSError):
        saved.load_file(tmp_path / "missing.safetensors")
