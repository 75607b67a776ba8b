"""One process of the distributed test: `python ddp_worker.py RANK WORLD INIT_FILE OUT_FILE`.
Trains ddp_setup's model under DistributedDataParallel (gloo) on its shard of the batch and
saves the trained parameters."""

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import ddp_setup

rank, world, init_file, out_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.set_num_threads(1)
# A file rendezvous: no port to choose, none to collide with another run.
dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
model = ddp_setup.model()
x, target = ddp_setup.data()
ddp_setup.train(DistributedDataParallel(model), x[rank::world], target[rank::world])
torch.save(model.state_dict(), out_file)
# Both ranks done before either tears down its connections (gloo aborts a process whose peer
# closes them while it still uses them).
dist.barrier()
dist.destroy_process_group()
