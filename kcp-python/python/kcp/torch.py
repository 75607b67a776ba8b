"""PyTorch modules on kcp's layers: `kcp.torch.Linear`, an `nn.Module` whose forward and
backward passes are kcp's planned kernels (a `torch.autograd.Function`), and `LSTM` and `GRU`
whose input projection is such a layer.

    import kcp.torch
    layer = kcp.torch.Linear([8, 20, 20, 18], [4, 4, 4, 16], format="kcp", rank=4)
    y = layer(x)            # x float32 [..., 57600] on the CPU -> y [..., 1024]
    y.sum().backward()      # layer.cores[k].grad, layer.bias.grad (and x.grad if x requires it)

The cores are an `nn.ParameterList` in `core_names` order (named as weight files name them,
in `core_names`), the bias a `Parameter` or None, so `state_dict()`, optimisers and
`DistributedDataParallel` see ordinary parameters. This version runs float32 CPU tensors; any
other device or dtype is a clear error.
"""

import math

import torch
from torch import nn

from . import Layer as _Layer

__all__ = ["Linear", "LSTM", "GRU"]


class _Apply(torch.autograd.Function):
    """y = x W^T + b by kcp's forward kernels; the gradients by its planned backward pass, dx
    only when x needs one (the plan without dx is cheaper)."""

    @staticmethod
    def forward(ctx, layer, threads, x, bias, *cores):
        x2 = x.detach().reshape(-1, layer.in_features).contiguous()
        arrays = [c.detach().contiguous().numpy() for c in cores]
        b = None if bias is None else bias.detach().contiguous().numpy()
        y = torch.from_numpy(layer.forward(x2.numpy(), arrays, b, threads))
        ctx.layer, ctx.threads, ctx.x_shape, ctx.has_bias = layer, threads, x.shape, bias is not None
        ctx.save_for_backward(x2, bias, *cores)
        return y.reshape(*x.shape[:-1], layer.out_features)

    @staticmethod
    def backward(ctx, dy):
        layer = ctx.layer
        x2, bias, *cores = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[2]
        dy2 = dy.reshape(-1, layer.out_features).contiguous().to(torch.float32)
        arrays = [c.detach().contiguous().numpy() for c in cores]
        b = None if bias is None else bias.detach().contiguous().numpy()
        dx, dcores, dbias = layer.backward(x2.numpy(), dy2.numpy(), arrays, b, dx=need_dx, threads=ctx.threads)
        dx = torch.from_numpy(dx).reshape(ctx.x_shape) if need_dx else None
        dbias = torch.from_numpy(dbias) if (dbias is not None and ctx.needs_input_grad[3]) else None
        dcores = [torch.from_numpy(g) if needed else None for g, needed in zip(dcores, ctx.needs_input_grad[4:])]
        return (None, None, dx, dbias, *dcores)


class Linear(nn.Module):
    """A linear layer `y = x W^T + b` whose weight W is stored in a tensor format and applied
    by kcp's planned kernels.

    `in_shape` and `out_shape` fold N and M into modes; `format` and its rank keys are those of
    `kcp.Layer`. The cores start uniform in [-scale, scale] with the scales that keep y's
    variance near x's, the bias uniform in [-1/sqrt(N), 1/sqrt(N)] as `nn.Linear`'s.
    `threads`: the most threads kcp's kernels use (default: `torch.get_num_threads()` at each
    call, so that kcp and torch's own pool do not oversubscribe the cores).
    """

    def __init__(self, in_shape, out_shape, format="kcp", rank=None, ranks=None, blocks=None, bias=True,
                 threads=None):
        super().__init__()
        self.layer = _Layer(in_shape, out_shape, format=format, rank=rank, ranks=ranks, blocks=blocks, bias=bias)
        self.in_features, self.out_features = self.layer.in_features, self.layer.out_features
        self.threads = threads
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(shape, dtype=torch.float32)) for shape in self.layer.core_shapes)
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, dtype=torch.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def core_names(self):
        """The cores' names, in the order of `cores`."""
        return self.layer.core_names

    def reset_parameters(self):
        """The initialisation described in the class's doc."""
        with torch.no_grad():
            for core, scale in zip(self.cores, self.layer.init_scales):
                core.uniform_(-scale, scale)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_features)
                self.bias.uniform_(-bound, bound)

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, found {type(x).__name__}")
        if x.device.type != "cpu":
            raise ValueError(f"kcp.torch.Linear runs CPU tensors in this version; x is on {x.device}")
        if x.dtype != torch.float32:
            raise TypeError(f"x must be float32, found {x.dtype}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape [..., {self.in_features}], found {list(x.shape)}")
        threads = self.threads if self.threads is not None else max(1, torch.get_num_threads())
        return _Apply.apply(self.layer, threads, x, self.bias, *self.cores)

    def save_file(self, path):
        """Write the cores and bias as a weight file (safetensors, the cores under
        `core_names`): the file the Rust layers and the `kcp` command line read."""
        cores = [c.detach().contiguous().numpy() for c in self.cores]
        bias = None if self.bias is None else self.bias.detach().contiguous().numpy()
        self.layer.save_weights(path, cores, bias)

    def load_file(self, path):
        """Read the cores and bias from a weight file (as `save_file`, the Rust layers and the
        `kcp` command line write them) into this module's parameters."""
        cores, bias = self.layer.load_weights(path)
        with torch.no_grad():
            for parameter, values in zip(self.cores, cores):
                parameter.copy_(torch.from_numpy(values))
            if self.bias is not None:
                self.bias.copy_(torch.from_numpy(bias))
        return self

    def extra_repr(self):
        return (f"in_shape={self.layer.in_shape}, out_shape={self.layer.out_shape}, format={self.layer.format!r}, "
                f"params={self.layer.params}, bias={self.bias is not None}")


class _Recurrent(nn.Module):
    """The shared part of LSTM and GRU: the input projection `input` (a `Linear` of `gates`
    times `hidden` outputs, kcp's kernels forward and backward), run once over every step of the
    sequence, then the recurrence in torch operations (BPTT by torch's autograd)."""

    gates = None

    def __init__(self, in_shape, out_shape, hidden, format="kcp", rank=None, ranks=None, blocks=None, bias=True,
                 batch_first=False, threads=None):
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, found {hidden!r}")
        self.input = Linear(in_shape, out_shape, format=format, rank=rank, ranks=ranks, blocks=blocks, bias=bias,
                            threads=threads)
        g = self.gates * hidden
        if self.input.out_features != g:
            raise ValueError(f"out_shape must multiply to {self.gates} x hidden = {g} (the gates stacked), "
                             f"found {self.input.out_features}")
        self.hidden_size, self.batch_first = hidden, batch_first
        self.input_size = self.input.in_features
        self.weight_hh_l0 = nn.Parameter(torch.empty(g, hidden, dtype=torch.float32))
        if bias:
            self.bias_hh_l0 = nn.Parameter(torch.empty(g, dtype=torch.float32))
        else:
            self.register_parameter("bias_hh_l0", None)
        bound = 1.0 / math.sqrt(hidden)
        with torch.no_grad():
            self.weight_hh_l0.uniform_(-bound, bound)
            if self.bias_hh_l0 is not None:
                self.bias_hh_l0.uniform_(-bound, bound)

    @property
    def bias_ih_l0(self):
        """The input projection's bias, under PyTorch's name."""
        return self.input.bias

    def _sequence(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, found {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"x must be [T, B, N] ([B, T, N] with batch_first), found {list(x.shape)}")
        return x.transpose(0, 1) if self.batch_first else x

    def _projected(self, x):
        steps, batch = x.shape[0], x.shape[1]
        return self.input(x.reshape(steps * batch, -1)).reshape(steps, batch, -1)

    def _output(self, hs):
        out = torch.stack(hs)
        return out.transpose(0, 1) if self.batch_first else out


class LSTM(_Recurrent):
    """`nn.LSTM`'s equations (one layer, one direction) whose input weight `weight_ih_l0` is a
    compressed layer: `input` (a `kcp.torch.Linear` whose `out_shape` multiplies to 4 x
    hidden, the gates stacked i, f, g, o as PyTorch stacks them). Input `[T, B, N]` (or
    `[B, T, N]` with `batch_first=True`), an optional `(h_0, c_0)` each `[1, B, H]`; returns
    `(output, (h_n, c_n))` as `nn.LSTM` does. `weight_hh_l0`, `bias_hh_l0` and `bias_ih_l0`
    (the projection's bias) carry PyTorch's names."""

    gates = 4

    def forward(self, x, state=None):
        x = self._sequence(x)
        batch, h_size = x.shape[1], self.hidden_size
        if state is None:
            h = x.new_zeros(batch, h_size)
            c = x.new_zeros(batch, h_size)
        else:
            h, c = state[0].reshape(batch, h_size), state[1].reshape(batch, h_size)
        projected = self._projected(x)
        hs = []
        for step in projected:
            gates = step + h @ self.weight_hh_l0.T
            if self.bias_hh_l0 is not None:
                gates = gates + self.bias_hh_l0
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        return self._output(hs), (h.unsqueeze(0), c.unsqueeze(0))


class GRU(_Recurrent):
    """`nn.GRU`'s equations (one layer, one direction) whose input weight is a compressed
    layer: `input`, whose `out_shape` multiplies to 3 x hidden (the gates stacked r, z, n as
    PyTorch stacks them). Input as `LSTM`'s, an optional `h_0` `[1, B, H]`; returns
    `(output, h_n)` as `nn.GRU` does."""

    gates = 3

    def forward(self, x, h0=None):
        x = self._sequence(x)
        batch, h_size = x.shape[1], self.hidden_size
        h = x.new_zeros(batch, h_size) if h0 is None else h0.reshape(batch, h_size)
        projected = self._projected(x)
        hs = []
        for step in projected:
            hidden = h @ self.weight_hh_l0.T
            if self.bias_hh_l0 is not None:
                hidden = hidden + self.bias_hh_l0
            ir, iz, inn = step.chunk(3, dim=1)
            hr, hz, hn = hidden.chunk(3, dim=1)
            r = torch.sigmoid(ir + hr)
            z = torch.sigmoid(iz + hz)
            n = torch.tanh(inn + r * hn)
            h = (1 - z) * n + z * h
            hs.append(h)
        return self._output(hs), h.unsqueeze(0)
