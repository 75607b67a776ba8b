"""The dense weight of a layer from its cores, written from docs/formats.md's conventions and
sharing no code with the package: one einsum over every core of the format's network.

W has shape [M, N], rows i = (i_1..i_D) and columns j = (j_1..j_D) row-major, and y = x W^T + b.
`einsum` is numpy.einsum or torch.einsum (the second keeps autograd through the cores).
"""

import string


def _letters():
    return iter(string.ascii_letters)


def subscripts(format, d, names):
    """The einsum subscripts of W over the cores named `names` (the layer's core_names)."""
    pool = _letters()
    i = [next(pool) for _ in range(d)]
    j = [next(pool) for _ in range(d)]
    of = {}
    if format == "kcp":
        r = next(pool)
        for k in range(d):
            of[f"factor.{k}"] = r + i[k] + j[k]
    elif format == "cp":
        r = next(pool)
        for k in range(d):
            of[f"out.{k}"] = r + i[k]
            of[f"in.{k}"] = r + j[k]
    elif format == "tt":
        t = [next(pool) for _ in range(d + 1)]
        for k in range(d):
            of[f"core.{k}"] = t[k] + i[k] + j[k] + t[k + 1]
    elif format == "tr":
        t = [next(pool) for _ in range(2 * d)]
        ring = lambda k: t[k % (2 * d)]
        for k in range(d):
            of[f"in.{k}"] = ring(k) + j[k] + ring(k + 1)
            of[f"out.{k}"] = ring(d + k) + i[k] + ring(d + k + 1)
    elif format == "bt":
        block = next(pool)
        t = [next(pool) for _ in range(d)]
        of["block.core"] = block + "".join(t)
        for k in range(d):
            of[f"block.factor.{k}"] = block + i[k] + j[k] + t[k]
    elif format == "ht":
        # The balanced tree of docs/formats.md: the node over modes a..b splits at
        # c = a + ceil((b - a + 1) / 2) - 1; bonds numbered as the cores come, children first.
        bonds = []

        def bond():
            bonds.append(next(pool))
            return bonds[-1]

        def node(a, b, root):
            if a == b:
                edge = bond()
                of[f"leaf.{a}"] = i[a] + j[a] + edge
                return edge
            c = a + (b - a + 1 + 1) // 2 - 1
            left, right = node(a, c, False), node(c + 1, b, False)
            parent = "" if root else bond()
            of[f"node.{a}-{b}"] = left + right + parent
            return parent

        node(0, d - 1, True)
    else:
        raise ValueError(format)
    assert sorted(of) == sorted(names), (sorted(of), sorted(names))
    return ",".join(of[name] for name in names) + "->" + "".join(i) + "".join(j)


def dense(einsum, format, d, names, cores, m, n):
    """W [M, N] of these cores (in `names` order)."""
    return einsum(subscripts(format, d, names), *cores).reshape(m, n)
