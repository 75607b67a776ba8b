"""PyTorch modules on kcp's layers: `kcp.torch.Linear`, an `nn.Module` whose forward and
backward passes are kcp's planned kernels (a `torch.autograd.Function`), `LSTM` and `GRU`
whose input projection is such a layer, and `compress`, which makes them from PyTorch's own.

    import kcp.torch
    layer = kcp.torch.Linear([8, 20, 20, 18], [4, 4, 4, 16], format="kcp", rank=4)
    y = layer(x)            # x [..., 57600] -> y [..., 1024]
    y.sum().backward()      # layer.cores[k].grad, layer.bias.grad (and x.grad if x requires it)

The cores are an `nn.ParameterList` in `core_names` order (named as weight files name them,
in `core_names`), the bias a `Parameter` or None, so `state_dict()`, optimisers and
`DistributedDataParallel` see ordinary parameters.

Engines: float32 CPU tensors run kcp's kernels; tensors on any other device or of another
dtype run the same plan as a sequence of `torch.einsum` calls, one per planned pairwise step
in the planned order (so a model moved to a GPU keeps the optimal order), differentiated by
torch's autograd. `engine="torch"` forces the einsum steps on the CPU too, `engine="kernels"`
refuses anything the kernels do not run. Under `torch.compile`, the kernels' call is a graph
break (`torch.compiler.disable`); the einsum steps compile like any torch code.
"""

import math

import numpy as np
import torch
from torch import nn

from . import Layer as _Layer
from . import _kcp

__all__ = ["Linear", "LSTM", "GRU", "compress", "ENGINES"]

ENGINES = ("auto", "kernels", "torch")
"""The values of `engine=`: kcp's kernels where they run (float32 CPU tensors), the einsum
steps elsewhere; the kernels only; the einsum steps only."""


class _Apply(torch.autograd.Function):
    """y = x W^T + b by kcp's forward kernels; the gradients by its planned backward pass, dx
    only when x needs one (the plan without dx is cheaper). When any input needs a gradient,
    the forward pass keeps what the backward pass reads (`kcp.Layer.forward_train`), so the
    backward pass does not run it again."""

    @staticmethod
    def forward(ctx, prepared, threads, x, bias, *cores):
        # prepared: kcp's layer with the current values of bias and cores bound.
        x2 = x.detach().reshape(-1, x.shape[-1]).contiguous()
        ctx.x_shape, ctx.threads = x.shape, threads
        if any(ctx.needs_input_grad):
            y, ctx.trace = prepared.forward_train(x2.numpy(), ctx.needs_input_grad[2], threads)
            # Saved so that autograd refuses a backward pass after x changed in place (the
            # trace reads x's memory).
            ctx.save_for_backward(x2)
        else:
            y = prepared.forward(x2.numpy(), threads)
        ctx.out_features = y.shape[1]
        return torch.from_numpy(y).reshape(*x.shape[:-1], y.shape[1])

    @staticmethod
    def backward(ctx, dy):
        ctx.saved_tensors  # noqa: B018 -- autograd's check that x is unchanged
        dy2 = dy.reshape(-1, ctx.out_features).to(torch.float32).contiguous()
        dx, dcores, dbias = ctx.trace.backward(dy2.numpy(), ctx.threads)
        dx = torch.from_numpy(dx).reshape(ctx.x_shape) if ctx.needs_input_grad[2] else None
        dbias = torch.from_numpy(dbias) if (dbias is not None and ctx.needs_input_grad[3]) else None
        dcores = [torch.from_numpy(g) if needed else None for g, needed in zip(dcores, ctx.needs_input_grad[4:])]
        return (None, None, dx, dbias, *dcores)


class _Recurrence(torch.autograd.Function):
    """The hidden states of every step (and an LSTM's final cell state) by kcp's recurrence;
    the gradients by its backpropagation through time (projected inputs, W_hh, b_hh and, where
    given, the initial state)."""

    @staticmethod
    def forward(ctx, recurrence, threads, projected, weight_hh, bias_hh, h0, c0):
        def array(t):
            return None if t is None else t.detach().contiguous().numpy()

        bias = array(bias_hh) if bias_hh is not None else np.zeros(weight_hh.shape[0], np.float32)
        hs, c_n, ctx.tape = recurrence.forward_train(array(projected), array(weight_hh), bias, array(h0), array(c0),
                                                     threads)
        ctx.lstm = c_n is not None
        outputs = (torch.from_numpy(hs),) + ((torch.from_numpy(c_n),) if ctx.lstm else ())
        return outputs

    @staticmethod
    def backward(ctx, dhs, dc_n=None):
        dhs = dhs.to(torch.float32).contiguous()
        dc = None if dc_n is None else dc_n.to(torch.float32).contiguous().numpy()
        dproj, dw, db, dh0, dc0 = ctx.tape.backward(dhs.numpy(), dc)
        needs = ctx.needs_input_grad
        return (None, None, torch.from_numpy(dproj) if needs[2] else None, torch.from_numpy(dw) if needs[3] else None,
                torch.from_numpy(db) if needs[4] else None, torch.from_numpy(dh0) if needs[5] else None,
                torch.from_numpy(dc0) if needs[6] and dc0 is not None else None)


def _disable(function):
    """`function` as a graph break under torch.compile (where torch has it)."""
    compiler = getattr(torch, "compiler", None)
    disable = getattr(compiler, "disable", None)
    return function if disable is None else disable(function)


class Linear(nn.Module):
    """A linear layer `y = x W^T + b` whose weight W is stored in a tensor format and applied
    in the order kcp's planner chose.

    `in_shape` and `out_shape` fold N and M into modes; `format` and its rank keys are those of
    `kcp.Layer`. The cores start uniform in [-scale, scale] with the scales that keep y's
    variance near x's, the bias uniform in [-1/sqrt(N), 1/sqrt(N)] as `nn.Linear`'s.
    `threads`: the most threads kcp's kernels use (default: `torch.get_num_threads()` at each
    call, so that kcp and torch's own pool do not oversubscribe the cores). `engine`: one of
    `ENGINES` (see the module's doc).
    """

    def __init__(self, in_shape, out_shape, format="kcp", rank=None, ranks=None, blocks=None, bias=True,
                 threads=None, engine="auto"):
        super().__init__()
        self.layer = _Layer(in_shape, out_shape, format=format, rank=rank, ranks=ranks, blocks=blocks, bias=bias)
        self.in_features, self.out_features = self.layer.in_features, self.layer.out_features
        self.threads = threads
        self.engine = engine
        self._steps = self.layer.einsum_steps
        self._bound = None
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(shape, dtype=torch.float32)) for shape in self.layer.core_shapes)
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, dtype=torch.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def __getstate__(self):
        # The bound weights are not copied or pickled: the copy binds its own.
        state = self.__dict__.copy()
        state["_bound"] = None
        return state

    @property
    def engine(self):
        """What runs the layer: one of `ENGINES`."""
        return self._engine

    @engine.setter
    def engine(self, engine):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; found {engine!r}")
        self._engine = engine

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
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape [..., {self.in_features}], found {list(x.shape)}")
        weight = self.cores[0]
        if x.device != weight.device:
            raise ValueError(f"x is on {x.device}, the layer's parameters on {weight.device}")
        if x.dtype != weight.dtype:
            raise TypeError(f"x is {x.dtype}, the layer's parameters {weight.dtype}")
        kernels = x.device.type == "cpu" and x.dtype == torch.float32
        if self._engine == "kernels" and not kernels:
            raise ValueError(f"engine=\"kernels\" runs float32 CPU tensors; x is {x.dtype} on {x.device}")
        if kernels and self._engine != "torch":
            return self._kernels(x)
        return self._einsum(x)

    @_disable
    def _kernels(self, x):
        threads = self.threads if self.threads is not None else max(1, torch.get_num_threads())
        prepared = self._prepared()
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return _Apply.apply(prepared, threads, x, self.bias, *self.cores)
        y = prepared.forward(x.reshape(-1, self.in_features).contiguous().numpy(), threads)
        return torch.from_numpy(y).reshape(*x.shape[:-1], self.out_features)

    def _prepared(self):
        """kcp's layer with the parameters' current values bound (`kcp._kcp.Layer.prepare`:
        the weights checked, the plan's load-time pre-products computed), made again only when
        a parameter changed: its memory (`.to()`, assigning `.data`) or its version (anything
        writing into it, an optimiser's step included)."""
        parameters = list(self.cores) + ([] if self.bias is None else [self.bias])
        key = tuple((p.data_ptr(), p._version) for p in parameters)
        if self._bound is None or self._bound[0] != key:
            arrays = [_array(p) for p in parameters]
            bias = None if self.bias is None else arrays.pop()
            self._bound = (key, self.layer._layer.prepare(arrays, bias))
        return self._bound[1]

    def _einsum(self, x):
        """The plan's pairwise steps, one `torch.einsum` each, in the planned order."""
        x_modes = x.reshape(-1, *self.layer.in_shape)
        temps, y = {}, None
        for equation, inputs, (kind, number) in self._steps:
            operands = [x_modes if k == "x" else self.cores[n] if k == "core" else temps[n] for k, n in inputs]
            result = torch.einsum(equation, *operands)
            if kind == "temp":
                temps[number] = result
            else:
                y = result
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def save_file(self, path):
        """Write the cores and bias as a weight file (safetensors, the cores under
        `core_names`): the file the Rust layers and the `kcp` command line read."""
        cores = [_array(c) for c in self.cores]
        self.layer.save_weights(path, cores, None if self.bias is None else _array(self.bias))

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


def _array(parameter):
    """A parameter's values as a float32 C-contiguous NumPy array (copied from another device
    or dtype)."""
    return parameter.detach().to("cpu", torch.float32).contiguous().numpy()


class _Recurrent(nn.Module):
    """The shared part of LSTM and GRU: the input projection `input` (a `Linear` of `gates`
    times `hidden` outputs, kcp's kernels forward and backward), run once over every step of the
    sequence, then the recurrence: kcp's (the Rust crate's `Recurrent` and its backpropagation
    through time, a `torch.autograd.Function`) where the projection runs on kcp's kernels, torch
    operations otherwise. `threads` bounds kcp's threads in both, as `Linear`'s does."""

    gates = None
    cell = None

    def __init__(self, in_shape, out_shape, hidden, format="kcp", rank=None, ranks=None, blocks=None, bias=True,
                 batch_first=False, threads=None, engine="auto"):
        super().__init__()
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, found {hidden!r}")
        self.input = Linear(in_shape, out_shape, format=format, rank=rank, ranks=ranks, blocks=blocks, bias=bias,
                            threads=threads, engine=engine)
        g = self.gates * hidden
        if self.input.out_features != g:
            raise ValueError(f"out_shape must multiply to {self.gates} x hidden = {g} (the gates stacked), "
                             f"found {self.input.out_features}")
        self.hidden_size, self.batch_first = hidden, batch_first
        self._kcp = _kcp.Recurrence(self.cell, hidden)
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

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_kcp"]
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._kcp = _kcp.Recurrence(self.cell, self.hidden_size)

    @property
    def bias_ih_l0(self):
        """The input projection's bias, under PyTorch's name."""
        return self.input.bias

    def save_file(self, path):
        """Write the layer as the Rust recurrent layers and `kcp run --cell` read it: the input
        projection's cores as `weight_ih.{core}`, `bias_ih`, `weight_hh`, `bias_hh` (a layer
        without biases cannot be written so: a ValueError)."""
        cores = [_array(c) for c in self.input.cores]
        bias_ih = None if self.input.bias is None else _array(self.input.bias)
        bias_hh = None if self.bias_hh_l0 is None else _array(self.bias_hh_l0)
        if bias_ih is None or bias_hh is None:
            raise ValueError("kcp's recurrent weight files hold a cell with biases (bias_ih, bias_hh); this one has none")
        self.input.layer.save_cell(path, self.cell, cores, bias_ih, _array(self.weight_hh_l0), bias_hh)

    def load_file(self, path):
        """Read a file `save_file`, the Rust recurrent layers or `kcp compress --cell` wrote
        into this module's parameters."""
        if self.input.bias is None or self.bias_hh_l0 is None:
            raise ValueError("kcp's recurrent weight files hold a cell with biases (bias_ih, bias_hh); this one has none")
        cores, bias_ih, weight_hh, bias_hh = self.input.layer.load_cell(path, self.cell)
        with torch.no_grad():
            for parameter, values in zip(self.input.cores, cores):
                parameter.copy_(torch.from_numpy(values))
            self.input.bias.copy_(torch.from_numpy(bias_ih))
            self.weight_hh_l0.copy_(torch.from_numpy(weight_hh))
            self.bias_hh_l0.copy_(torch.from_numpy(bias_hh))
        return self

    def _projected(self, x):
        """The projected inputs `[T, B, G]` of x (`[T, B, N]`, or `[B, T, N]` batch first): one
        call of the projection over every step, on x as it is laid out (no copy of x), the
        small result transposed where the batch comes first."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, found {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"x must be [T, B, N] ([B, T, N] with batch_first), found {list(x.shape)}")
        projected = self.input(x)
        return projected.transpose(0, 1) if self.batch_first else projected

    def _output(self, hs):
        return hs.transpose(0, 1) if self.batch_first else hs

    def _recurrence(self, projected, state):
        """The hidden states `[T, B, H]` and the final state: by kcp's recurrence where the
        projection ran on kcp's kernels (float32 CPU tensors), by torch operations otherwise."""
        weight = self.weight_hh_l0
        # An input projection that is not a kcp Linear (replaced by the user) runs torch's.
        engine = getattr(self.input, "engine", "torch")
        kernels = (engine != "torch" and projected.device.type == "cpu" and projected.dtype == torch.float32
                   and weight.device.type == "cpu" and weight.dtype == torch.float32)
        if not kernels:
            return self._torch_recurrence(projected, state)
        return self._kcp_recurrence(projected, state)

    @_disable
    def _kcp_recurrence(self, projected, state):
        batch, h_size = projected.shape[1], self.hidden_size
        lstm = self.cell == "lstm"
        if state is None:
            h0, c0 = None, None
        elif lstm:
            h0, c0 = state[0].reshape(batch, h_size), state[1].reshape(batch, h_size)
        else:
            h0, c0 = state.reshape(batch, h_size), None
        # As many threads as the input projection's kernels take.
        threads = getattr(self.input, "threads", None) or max(1, torch.get_num_threads())
        outputs = _Recurrence.apply(self._kcp, threads, projected, self.weight_hh_l0, self.bias_hh_l0, h0, c0)
        hs = outputs[0]
        return (hs, (hs[-1], outputs[1])) if lstm else (hs, hs[-1])


class LSTM(_Recurrent):
    """`nn.LSTM`'s equations (one layer, one direction) whose input weight `weight_ih_l0` is a
    compressed layer: `input` (a `kcp.torch.Linear` whose `out_shape` multiplies to 4 x
    hidden, the gates stacked i, f, g, o as PyTorch stacks them). Input `[T, B, N]` (or
    `[B, T, N]` with `batch_first=True`), an optional `(h_0, c_0)` each `[1, B, H]`; returns
    `(output, (h_n, c_n))` as `nn.LSTM` does. `weight_hh_l0`, `bias_hh_l0` and `bias_ih_l0`
    (the projection's bias) carry PyTorch's names."""

    gates = 4
    cell = "lstm"

    def forward(self, x, state=None):
        hs, (h, c) = self._recurrence(self._projected(x), state)
        return self._output(hs), (h.unsqueeze(0), c.unsqueeze(0))

    def _torch_recurrence(self, projected, state):
        """The hidden states `[T, B, H]` and the final `(h, c)` from projected inputs
        `[T, B, 4H]`, in torch operations."""
        batch, h_size = projected.shape[1], self.hidden_size
        if state is None:
            h = projected.new_zeros(batch, h_size)
            c = projected.new_zeros(batch, h_size)
        else:
            h, c = state[0].reshape(batch, h_size), state[1].reshape(batch, h_size)
        hs = []
        for step in projected:
            gates = step + h @ self.weight_hh_l0.T
            if self.bias_hh_l0 is not None:
                gates = gates + self.bias_hh_l0
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        return torch.stack(hs), (h, c)


class GRU(_Recurrent):
    """`nn.GRU`'s equations (one layer, one direction) whose input weight is a compressed
    layer: `input`, whose `out_shape` multiplies to 3 x hidden (the gates stacked r, z, n as
    PyTorch stacks them). Input as `LSTM`'s, an optional `h_0` `[1, B, H]`; returns
    `(output, h_n)` as `nn.GRU` does."""

    gates = 3
    cell = "gru"

    def forward(self, x, h0=None):
        hs, h = self._recurrence(self._projected(x), h0)
        return self._output(hs), h.unsqueeze(0)

    def _torch_recurrence(self, projected, h0):
        """The hidden states `[T, B, H]` and the final h from projected inputs `[T, B, 3H]`, in
        torch operations."""
        batch, h_size = projected.shape[1], self.hidden_size
        h = projected.new_zeros(batch, h_size) if h0 is None else h0.reshape(batch, h_size)
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
        return torch.stack(hs), h


def compress(module, in_shape, out_shape, format="kcp", rank=None, ranks=None, iters=100, seed=0, **options):
    """A kcp module fitted to a PyTorch one, the starting point of a fine-tune: a `Linear` from
    an `nn.Linear`, an `LSTM` from an `nn.LSTM`, a `GRU` from an `nn.GRU` (one layer, one
    direction). The dense input weight is fitted as `kcp compress` fits it: alternating least
    squares for `format="kcp"` and `"cp"` (`rank`, at most `iters` sweeps from a start drawn
    from `seed`), TT-SVD for `format="tt"` (`ranks`); biases and a cell's `weight_hh_l0` are
    copied. The result's `relative_error` is `||W - W_fit||_F / ||W||_F`. `options` (`threads`, `engine`,
    and for cells `batch_first`, taken from the module unless given) go to the constructor."""
    if isinstance(module, nn.Linear):
        target = Linear(in_shape, out_shape, format=format, rank=rank, ranks=ranks, bias=module.bias is not None,
                        **options)
        _check_size(target, module.in_features, module.out_features)
        target.relative_error = _fit(target, module.weight, iters, seed)
        with torch.no_grad():
            if module.bias is not None:
                target.bias.copy_(module.bias)
        return target.to(module.weight.device)
    if isinstance(module, (nn.LSTM, nn.GRU)):
        if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
            raise ValueError("compress fits one-layer, one-direction cells without projections "
                             f"(found num_layers={module.num_layers}, bidirectional={module.bidirectional})")
        kind = LSTM if isinstance(module, nn.LSTM) else GRU
        options.setdefault("batch_first", module.batch_first)
        target = kind(in_shape, out_shape, module.hidden_size, format=format, rank=rank, ranks=ranks,
                      bias=module.bias, **options)
        _check_size(target.input, module.input_size, kind.gates * module.hidden_size)
        target.relative_error = _fit(target.input, module.weight_ih_l0, iters, seed)
        with torch.no_grad():
            target.weight_hh_l0.copy_(module.weight_hh_l0)
            if module.bias:
                target.input.bias.copy_(module.bias_ih_l0)
                target.bias_hh_l0.copy_(module.bias_hh_l0)
        return target.to(module.weight_ih_l0.device)
    raise TypeError(f"compress takes an nn.Linear, nn.LSTM or nn.GRU, found {type(module).__name__}")


def _check_size(target, n, m):
    if (target.in_features, target.out_features) != (n, m):
        raise ValueError(f"in_shape and out_shape multiply to {target.in_features} and {target.out_features}; "
                         f"the module maps {n} to {m}")


def _fit(target, weight, iters, seed):
    """Fit `target`'s cores to `weight`; the relative error."""
    cores, error, _ = target.layer.compress(_array(weight), iters=iters, seed=seed)
    with torch.no_grad():
        for parameter, values in zip(target.cores, cores):
            parameter.copy_(torch.from_numpy(values))
    return error
