"""kcp.torch layers train under PyTorch's DistributedDataParallel: two processes (gloo), each
on half of the batch, end with the parameters that one process training on the whole batch
reaches (DDP averages the gradients; the loss is a mean, so that is the whole batch's)."""

import os
import subprocess
import sys

import torch

import ddp_setup

HERE = os.path.dirname(os.path.abspath(__file__))


def test_two_processes_train_as_one(tmp_path):
    world = 2
    outs = [tmp_path / f"rank{rank}.pt" for rank in range(world)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    workers = [
        subprocess.Popen([sys.executable, os.path.join(HERE, "ddp_worker.py"), str(rank), str(world),
                          str(tmp_path / "rendezvous"), str(outs[rank])],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for rank in range(world)
    ]
    try:
        logs = [w.communicate(timeout=300)[0].decode(errors="replace") for w in workers]
    finally:
        for w in workers:
            w.kill()
    for rank, (w, log) in enumerate(zip(workers, logs)):
        assert w.returncode == 0, f"rank {rank} failed:\n{log}"

    reference = ddp_setup.model()
    ddp_setup.train(reference, *ddp_setup.data())
    want = reference.state_dict()
    for rank, out in enumerate(outs):
        got = torch.load(out)
        assert got.keys() == want.keys()
        for name in want:
            assert torch.allclose(got[name], want[name], rtol=1e-4, atol=1e-6), (rank, name)
    # The processes agree with each other exactly (DDP keeps replicas identical).
    first, second = (torch.load(out) for out in outs)
    assert all(torch.equal(first[name], second[name]) for name in first)
    # And training moved the parameters.
    start = ddp_setup.model().state_dict()
    assert any(not torch.allclose(start[name], want[name]) for name in want)
