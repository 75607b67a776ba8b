"""kcp: compressed layers (KCP, CP, TT, TR, BT, HT) planned by kcp's compiler and run by its
kernels, as NumPy functions (`kcp.Layer`) and PyTorch modules (`kcp.torch`).

    import kcp
    layer = kcp.Layer([8, 20, 20, 18], [4, 4, 4, 16], format="kcp", rank=4, bias=True)
    cores = layer.random_cores(seed=0)          # float32 arrays, in layer.core_names order
    y = layer.forward(x, cores, bias)           # x float32 [B, N] -> y [B, M]
    dx, dcores, dbias = layer.backward(x, dy, cores, bias, dx=True)
    kcp.plan([8, 20, 20, 18], [4, 4, 4, 16], format="tt", ranks=[1, 4, 4, 4, 1])  # a dict

Arrays are float32. A C-contiguous float32 array is used in place (no copy); a float32 array
of another layout is copied once into C order; an array of any other dtype is a TypeError
(convert it with `.astype(numpy.float32)`), so that no precision changes silently. Shapes that
do not fit the layer are ValueErrors. Kernels run with the GIL released, on `threads` threads
(None: all of the pool's).
"""

import json

import numpy as np

from . import _kcp

__all__ = ["Layer", "plan", "formats"]


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
        self._layer = _kcp.Layer(_shape(in_shape, "in_shape"), _shape(out_shape, "out_shape"), format,
                                 _count(rank, "rank"), _ranks(ranks), _count(blocks, "blocks"), bool(bias))

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
        dx None unless `dx=True`, dbias None for a layer without bias."""
        x, dy = _matrix(x, "x"), _matrix(dy, "dy")
        return self._layer.backward(x, dy, _cores(cores), _vector(bias, "bias"), bool(dx), _threads(threads))

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

    def __repr__(self):
        return repr(self._layer)


def _path(path):
    import os
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, found {type(path).__name__}")
    return os.fspath(path)


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
