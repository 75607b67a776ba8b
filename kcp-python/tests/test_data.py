"""kcp.data: the synthetic UCF11-shaped clips."""

import numpy as np
import pytest

import kcp.data


def test_clips_are_deterministic_balanced_and_shaped():
    clips, labels = kcp.data.clips("test", start=20, count=4, threads=1)
    assert clips.shape == (4, kcp.data.FRAMES, kcp.data.FRAME) and clips.dtype == np.uint8
    assert kcp.data.FRAME == kcp.data.HEIGHT * kcp.data.WIDTH * 3 == 57600
    assert labels.tolist() == [k % kcp.data.CLASSES for k in range(20, 24)]
    again, _ = kcp.data.clips("test", start=22, count=2, threads=2)
    assert np.array_equal(again, clips[2:])  # clip k is clip k, whatever else is generated
    train, _ = kcp.data.clips("train", start=20, count=1)
    assert not np.array_equal(train[0], clips[0])  # another split, another seed
    # Frames vary (objects, noise), and the mean frame goes.
    x = kcp.data.frames(clips)
    assert x.dtype == np.float32 and np.abs(x.mean(axis=1)).max() < 1e-6 and x.std() > 0.01
    # Against the same in NumPy.
    values = clips.astype(np.float64) / 255
    assert np.abs(x - (values - values.mean(axis=1, keepdims=True))).max() < 1e-5
    assert np.array_equal(kcp.data.frames(clips, threads=1), kcp.data.frames(clips, threads=3))


def test_a_data_set_for_a_data_loader():
    import torch

    dataset = kcp.data.Clips("test", count=3)
    assert len(dataset) == 3
    clip, label = dataset[2]
    assert clip.shape == (16, 57600) and clip.dtype == np.uint8 and label == 2
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=kcp.data.collate)
    (x, labels), (x2, labels2) = list(loader)
    assert x.shape == (2, 16, 57600) and x.dtype == torch.float32 and labels.tolist() == [0, 1]
    assert torch.equal(x2[0], torch.from_numpy(kcp.data.frames(clip)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        kcp.data.clips("validation")
    with pytest.raises(ValueError, match="not all in the test split"):
        kcp.data.clips("test", start=549, count=2)
    with pytest.raises(TypeError, match="count"):
        kcp.data.clips("test", count=1.5)
    with pytest.raises(ValueError, match="threads"):
        kcp.data.clips("test", count=1, threads=0)
    with pytest.raises(TypeError, match="uint8"):
        kcp.data.frames(np.zeros((2, 3), np.float32))
