"""PyTorch modules on kcp's layers: `kcp.torch.Linear`, an `nn.Module` whose forward and
backward passes are kcp's planned kernels (a `torch.autograd.Function`).

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

__all__ = ["Linear"]


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
