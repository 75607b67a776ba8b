"""kcp: compressed layers (KCP, CP, TT, TR, BT, HT) planned by kcp's compiler and run by its
kernels, as NumPy functions (`kcp.Layer`) and PyTorch modules (`kcp.torch`).

    import kcp
    layer = kcp.Layer([8, 20, 20, 18], [4, 4, 4, 16], format="kcp", rank=4, bias=True)
    cores = layer.random_cores(seed=0)          # float32 arrays, in layer.core_names order
    y = layer.forward(x, cores, bias)           # x float32 [B, N] -> y [B, M]
    dx, dcores, dbias = layer.backward(x, dy, cores, bias, dx=True)
    y, trace = layer.forward_train(x, cores, bias, dx=True)   # keeps what backward reads
    dx, dcores, dbias = trace.backward(dy)                    # no second forward pass
    kcp.plan([8, 20, 20, 18], [4, 4, 4, 16], format="tt", ranks=[1, 4, 4, 4, 1])  # a dict

Arrays are float32. A C-contiguous float32 array is used in place (no copy); a float32 array
of another layout is copied once into C order; an array of any other dtype is a TypeError
(convert it with `.astype(numpy.float32)`), so that no precision changes silently. Shapes that
do not fit the layer are ValueErrors. Kernels run with the GIL released, on `threads` threads
(None: all of the pool's). `kcp.data` generates the synthetic UCF11-shaped clips of the
training example; `kcp.torch` holds the PyTorch modules.
"""

import json

import numpy as np

from . import _kcp, data

__all__ = ["Layer", "plan", "formats", "data"]


def formats():
    """The names of the formats, as `format=` takes them."""
    return list(_kcp.formats())


def plan(in_shape, out_shape, format="kcp", rank=None, ranks=None, blocks=None, bias=False, batch=1,
         backward=False):
    """The plan of a layer as a dict: the JSON object of `kcp plan --json` (its MACs, the
    reference orders beside the planned one, its cores and plan text; with `backward=True` the
    backward pass's plan too)."""
    text = _kcp.plan_json(_shape(in_shape, "in_shape"), _shape(out_shape, "out_shape"), format,
                          _count(rank, "rank"), _ranks(ranks), _count(blocks, "blocks"), bool(bias),
                          _count(batch, "batch"), bool(backward))
    return json.loads(text)


class Layer:
    """A layer of any format, planned for its shapes; its weights come with each call.

    `format` is one of `kcp.formats()`, with the rank keys `kcp_layer!` takes: `rank=` for
    kcp, cp and ht; `ranks=` for tt (r_0..r_D, starting and ending with 1) and tr (the ring's
    2D ranks); `blocks=` and `ranks=` (R_1..R_D) for bt.
    """

    def __init__(self, in_shape, out_shape, format="kcp", rank=None, ranks=None, blocks=None, bias=False):
        self._args = (_shape(in_shape, "in_shape"), _shape(out_shape, "out_shape"), format, _count(rank, "rank"),
                      _ranks(ranks), _count(blocks, "blocks"), bool(bias))
        self._layer = _kcp.Layer(*self._args)

    def __reduce__(self):
        # Copied and pickled as its arguments: the copy plans the layer again.
        return (Layer, self._args)

    format = property(lambda self: self._layer.format, doc="The format's name.")
    in_shape = property(lambda self: list(self._layer.in_shape), doc="The input modes.")
    out_shape = property(lambda self: list(self._layer.out_shape), doc="The output modes.")
    in_features = property(lambda self: self._layer.in_features, doc="N, the product of in_shape.")
    out_features = property(lambda self: self._layer.out_features, doc="M, the product of out_shape.")
    bias = property(lambda self: self._layer.has_bias, doc="Whether the layer adds a bias.")
    core_names = property(lambda self: list(self._layer.core_names),
                          doc="The cores' names (as weight files name them), in the order calls take them.")
    core_shapes = property(lambda self: [tuple(s) for s in self._layer.core_shapes],
                           doc="The cores' shapes, in core_names order.")
    init_scales = property(lambda self: list(self._layer.init_scales),
                           doc="Per core, the scale of a uniform initialisation that keeps y's variance near x's.")
    params = property(lambda self: self._layer.params, doc="The cores' parameters (the bias not counted).")
    macs = property(lambda self: self._layer.macs, doc="Multiply-adds per row of the planned forward pass.")
    plan = property(lambda self: self._layer.plan, doc="The plan, as `kcp plan` prints it.")

    def random_cores(self, seed=0):
        """Cores drawn uniformly in [-scale, scale] with `init_scales`, float32."""
        rng = np.random.default_rng(seed)
        return [rng.uniform(-s, s, size=shape).astype(np.float32) for s, shape in zip(self.init_scales, self.core_shapes)]

    def forward(self, x, cores, bias=None, threads=None):
        """y = x W^T + b for x `[B, N]`: a new float32 array `[B, M]`."""
        x = _matrix(x, "x")
        return self._layer.forward(x, _cores(cores), _vector(bias, "bias"), _threads(threads))

    def backward(self, x, dy, cores, bias=None, dx=False, threads=None):
        """The gradients of `sum(dy * y)` for x `[B, N]` and dy `[B, M]`: `(dx, dcores, dbias)`,
        dx None unless `dx=True`, dbias None for a layer without bias. Runs the forward pass
        again; `forward_train` keeps it instead."""
        x, dy = _matrix(x, "x"), _matrix(dy, "dy")
        return self._layer.backward(x, dy, _cores(cores), _vector(bias, "bias"), bool(dx), _threads(threads))

    def forward_train(self, x, cores, bias=None, dx=False, threads=None):
        """y as `forward` computes it, and a trace whose `backward(dy, threads=None)` returns
        the gradients as `backward` does without a second forward pass. The trace keeps x (a
        float32 C-contiguous x itself, not a copy: do not change it in place before the
        backward pass), the weights of this call and the intermediates the backward plan reads.
        `dx`: whether that backward pass computes dx."""
        x = _matrix(x, "x")
        y, trace = self._layer.forward_train(x, _cores(cores), _vector(bias, "bias"), bool(dx), _threads(threads))
        return y, Trace(trace)

    def prepare(self, cores, bias=None):
        """The layer with these weights bound: a `Prepared` whose `forward` and
        `forward_train` do not check the weights or compute the plan's load-time pre-products
        again (what every call of `forward` does). The weights are copied: changing the arrays
        later does not change it."""
        return Prepared(self._layer.prepare(_cores(cores), _vector(bias, "bias")))

    @property
    def einsum_steps(self):
        """The plan as a list of einsum steps `(equation, inputs, output)`, load-time steps
        first, in the planned order: inputs and output are `(kind, number)` with kind "x" (x as
        `[B, *in_shape]`), "core", "temp" (an earlier step's result) or "y" (`[B, *out_shape]`).
        `kcp.torch` runs them with `torch.einsum` on devices kcp's kernels do not serve."""
        return [(eq, [tuple(i) for i in inputs], tuple(out)) for eq, inputs, out in self._layer.einsum_steps]

    def compress(self, w, iters=100, seed=0):
        """Cores fitted to a dense weight w `[M, N]` (float32): alternating least squares for a
        kcp or cp layer (at most `iters` sweeps from a random start drawn from `seed`), TT-SVD
        for a tt layer (exact where the ranks allow), as `kcp compress` fits them; other formats are a
        ValueError. Returns `(cores, relative_error, sweeps)` (sweeps None for TT-SVD),
        relative_error `||W - W_fit||_F / ||W||_F`. The bias is not fitted."""
        w = _matrix(w, "w")
        return self._layer.compress(w, _integer(iters, "iters"), _integer(seed, "seed"))

    def load_weights(self, path):
        """The cores and bias of a weight file written by `save_weights`, the Rust layers or the
        `kcp` command line (safetensors: the cores under `core_names`, `bias`), checked against
        the layer: `(cores, bias)`. An unreadable file is an OSError, one that does not hold
        this layer a ValueError."""
        return self._layer.load(_path(path))

    def save_weights(self, path, cores, bias=None):
        """Write the cores and bias as a weight file that `load_weights`, the Rust layers and the
        `kcp` command line read: complete, or not at all (an old file of that name stays)."""
        self._layer.save(_path(path), _cores(cores), _vector(bias, "bias"))

    def load_cell(self, path, cell):
        """The weights of a recurrent layer (`cell` "lstm" or "gru") whose input projection is
        this layer, from a file the Rust recurrent layers and `kcp run --cell` read
        (`weight_ih.{core}`, `bias_ih`, `weight_hh`, `bias_hh`): `(cores, bias_ih, weight_hh,
        bias_hh)`. The layer's M must be gates x hidden, and it must have a bias."""
        return self._layer.load_cell(_path(path), _name(cell, "cell"))

    def save_cell(self, path, cell, cores, bias_ih, weight_hh, bias_hh):
        """Write a recurrent layer's weight file (the names `load_cell` reads): complete, or not
        at all."""
        self._layer.save_cell(_path(path), _name(cell, "cell"), _cores(cores), _vector(bias_ih, "bias_ih"),
                              _matrix(weight_hh, "weight_hh"), _vector(bias_hh, "bias_hh"))

    def __repr__(self):
        return repr(self._layer)


class Prepared:
    """A layer with its weights bound (`Layer.prepare`)."""

    def __init__(self, prepared):
        self._prepared = prepared

    def forward(self, x, threads=None):
        """As `Layer.forward`, with the bound weights."""
        return self._prepared.forward(_matrix(x, "x"), _threads(threads))

    def forward_train(self, x, dx=False, threads=None):
        """As `Layer.forward_train`, with the bound weights."""
        y, trace = self._prepared.forward_train(_matrix(x, "x"), bool(dx), _threads(threads))
        return y, Trace(trace)


class Trace:
    """What `Layer.forward_train` keeps for the backward pass of that call."""

    def __init__(self, trace):
        self._trace = trace

    def backward(self, dy, threads=None):
        """The gradients of `sum(dy * y)` for the pass that made this trace, dy `[B, M]`:
        `(dx, dcores, dbias)` as `Layer.backward` returns them. May be called more than once."""
        return self._trace.backward(_matrix(dy, "dy"), _threads(threads))


def _path(path):
    import os
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, found {type(path).__name__}")
    return os.fspath(path)


def _name(value, name):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, found {type(value).__name__}")
    return value


def _float32(array, name):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of float32, found {type(array).__name__}")
    if array.dtype != np.float32:
        raise TypeError(f"{name} must be float32, found {array.dtype} (convert it with .astype(numpy.float32))")
    return np.ascontiguousarray(array)


def _matrix(array, name):
    array = _float32(array, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a matrix [rows, features], found shape {array.shape}")
    return array


def _vector(array, name):
    if array is None:
        return None
    array = _float32(array, name)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a vector, found shape {array.shape}")
    return array


def _cores(cores):
    if isinstance(cores, np.ndarray) or not hasattr(cores, "__iter__"):
        raise TypeError("cores must be a list of float32 arrays, in core_names order")
    return [_float32(core, f"cores[{k}]") for k, core in enumerate(cores)]


def _integer(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, found {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, found {value}")
    return int(value)


def _count(value, name):
    return None if value is None else _integer(value, name)


def _shape(values, name):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of integers, found {type(values).__name__}")
    return [_integer(v, f"{name} entries") for v in values]


def _ranks(values):
    return None if values is None else _shape(values, "ranks")


def _threads(threads):
    if threads is None:
        return None
    threads = _integer(threads, "threads")
    if threads == 0:
        raise ValueError("threads must be at least 1 (None: all of them)")
    return threads
