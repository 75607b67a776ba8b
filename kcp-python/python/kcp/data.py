"""The synthetic UCF11-shaped data set of kcp's training example ("moving shapes"): clips of
16 RGB frames of 160x120 (one frame is the 57,600 inputs of the UCF11 layer) whose class is
the motion of a target object, one of eleven, among a distractor, a colour gradient and pixel
noise. UCF11 itself cannot be downloaded everywhere; these clips have its shape and size, and
are generated deterministically: clip k of a split is the same on every machine, and is of
class k % 11.

    import kcp.data
    clips, labels = kcp.data.clips("train", count=110)   # uint8 [110, 16, 57600], int64 [110]
    x = kcp.data.frames(clips)                            # float32, each clip's mean frame subtracted
    loader = torch.utils.data.DataLoader(kcp.data.Clips("test"), batch_size=16, collate_fn=kcp.data.collate)
"""

import numpy as np

from . import _kcp

__all__ = ["clips", "frames", "Clips", "collate", "FRAMES", "HEIGHT", "WIDTH", "FRAME", "CLASSES", "TRAIN_LEN", "TEST_LEN"]

FRAMES = _kcp.DATA_FRAMES
"""Frames per clip, T."""
HEIGHT = _kcp.DATA_HEIGHT
"""Rows per frame."""
WIDTH = _kcp.DATA_WIDTH
"""Pixels per row."""
FRAME = _kcp.DATA_FRAME
"""Floats per frame: 57,600 = 120 x 160 x 3, the UCF11 layer's input."""
CLASSES = _kcp.DATA_CLASSES
"""The eleven motions."""
TRAIN_LEN = _kcp.DATA_TRAIN_LEN
"""Clips in the training split (100 per class)."""
TEST_LEN = _kcp.DATA_TEST_LEN
"""Clips in the test split (50 per class, from another seed)."""


def clips(split="train", start=0, count=None, threads=None):
    """Clips `start .. start + count` of `split` ("train" or "test"; count None: to the
    split's end): `(clips, labels)`, clips uint8 `[count, FRAMES, FRAME]` (each frame
    `[HEIGHT, WIDTH, 3]` row-major, pixel value `round(255 v)` for v in [0, 1]), labels int64.
    Generated on `threads` threads (None: every core)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be \"train\" or \"test\", found {split!r}")
    size = TRAIN_LEN if split == "train" else TEST_LEN
    start = _count(start, "start")
    count = size - start if count is None else _count(count, "count")
    if threads is not None:
        threads = _count(threads, "threads")
        if threads == 0:
            raise ValueError("threads must be at least 1 (None: every core)")
    return _kcp.clips(split, start, count, threads)


def frames(clips, threads=None):
    """Clips as float32 model input: pixel / 255, each clip's mean frame subtracted from its
    frames (the static background goes, the motion stays), as the Rust example feeds its
    models. `clips` uint8 `[..., FRAMES, FRAME]`; one pass, on `threads` threads (None: every
    core)."""
    if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8 or clips.ndim < 2:
        found = f"{clips.dtype} {clips.shape}" if isinstance(clips, np.ndarray) else type(clips).__name__
        raise TypeError(f"clips must be a uint8 numpy.ndarray [..., frames, pixels], found {found}")
    if threads is not None:
        threads = _count(threads, "threads")
    return _kcp.frames(np.ascontiguousarray(clips), threads)


class Clips:
    """A split as a map-style data set for `torch.utils.data.DataLoader`: item k is `(clip,
    label)`, the clip as stored (uint8 `[FRAMES, FRAME]`); `collate` makes a batch of them model
    input. The clips are generated once, when it is made, and kept as bytes (the training
    split: 1 GB); `count` takes the first clips only."""

    def __init__(self, split="train", count=None, threads=None):
        self.clips, self.labels = clips(split, 0, count, threads)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, k):
        return self.clips[k], int(self.labels[k])


def collate(items):
    """A DataLoader's batch of `Clips` items: `(x, labels)`, x a float32 torch tensor
    `[B, FRAMES, FRAME]` (`frames` of the clips, in one pass), labels int64 `[B]`."""
    import torch

    stacked = np.stack([clip for clip, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.from_numpy(frames(stacked)), labels


def _count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, found {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, found {value}")
    return int(value)
