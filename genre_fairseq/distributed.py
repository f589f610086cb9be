"""Two fixes to fairseq 0.12's distributed training, applied when fairseq runs the plugin.

**Restoring a checkpoint on several processes (torch >= 2.6).** Rank 0 loads the checkpoint (through
the allow-list of ``checkpoints.py``) and sends it to the other ranks with ``broadcast_object``,
which pickles it with ``torch.save`` and unpickles it with ``torch.load``. The state it sends holds
the training config as an OmegaConf ``DictConfig``, which ``torch.load``'s default
``weights_only=True`` refuses: every rank but 0 crashes when it fine-tunes from BART/mBART or
resumes. :func:`patch_fairseq_broadcast_object` makes the receivers unpickle with
``weights_only=False``; the ``genre`` task applies it when fairseq builds the task
(``genre_fairseq.apply_fairseq_fixes``), so importing the package changes nothing. That trusts rank 0 of the same job, as fairseq already does when it gathers
logging outputs with plain ``pickle``; the checkpoint file itself is still read with the allow-list.
(``--load-checkpoint-on-all-dp-ranks``, where every rank reads the file itself, avoids the broadcast.)

**torchrun on machines without CUDA.** Under ``torchrun`` (which sets ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``), fairseq's ``infer_init_method`` fails on a machine without a GPU in two ways:

* without ``--distributed-world-size`` (whose default is the number of visible GPUs, 1 on a CPU
  host) it returns early, so every process trains alone and all of them write the same
  checkpoint: N unsynchronized copies, and no error;
* with it, the device id is ``RANK % torch.cuda.device_count()``: ``ZeroDivisionError``.

:func:`patch_fairseq_torchrun_detection`, run by ``genre_fairseq.register`` when fairseq loads the
plugin (``--user-dir``, before ``fairseq-train`` resolves its launcher), wraps
``fairseq.distributed.utils.infer_init_method``:
when no CUDA device is visible and the torchrun variables describe more than one process, it
takes the world size, rank and local rank from them and initializes with ``env://``, without
spawning. It refuses, with one line saying what to add, the two settings that cannot work on CPU:
``--distributed-backend nccl`` (fairseq's default) and ``--ddp-backend c10d/pytorch_ddp`` (fairseq
hands torch's DistributedDataParallel a device id, which it refuses for CPU modules).
On a machine with GPUs, fairseq's own detection runs unchanged.

The alternative that needs no launcher: start each process yourself with
``--distributed-init-method tcp://HOST:PORT --distributed-world-size N --distributed-rank R
--distributed-no-spawn``; fairseq then skips detection entirely.
"""

import io
import logging
import os
from typing import Mapping, Optional

import torch

logger = logging.getLogger(__name__)

TORCHRUN_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")
CPU_DDP_BACKENDS = ("legacy_ddp", "no_c10d")


def torchrun_world_size(environ: Mapping[str, str]) -> Optional[int]:
    """The world size torchrun announced in ``environ``, or None when not launched by torchrun."""
    if not all(name in environ for name in TORCHRUN_VARIABLES):
        return None
    return int(environ["WORLD_SIZE"])


def init_from_torchrun_on_cpu(cfg, environ: Mapping[str, str]) -> None:
    """Fill fairseq's distributed config (``cfg.distributed_training``) from torchrun's variables, for CPU."""
    if cfg.distributed_backend == "nccl":
        raise ValueError("torchrun on a machine without CUDA: NCCL needs GPUs; add --distributed-backend gloo")
    if cfg.ddp_backend not in CPU_DDP_BACKENDS:
        raise ValueError(
            f"torchrun on a machine without CUDA: --ddp-backend {cfg.ddp_backend} cannot wrap a CPU model in "
            f"fairseq 0.12; add --ddp-backend legacy_ddp (GENRE's no_c10d)"
        )
    cfg.distributed_init_method = "env://"
    cfg.distributed_world_size = int(environ["WORLD_SIZE"])
    cfg.distributed_rank = int(environ["RANK"])
    cfg.device_id = int(environ.get("LOCAL_RANK", 0))
    cfg.distributed_no_spawn = True  # torchrun already started one process per rank
    logger.info("torchrun without CUDA: rank %d of %d (local rank %d), %s backend",
                cfg.distributed_rank, cfg.distributed_world_size, cfg.device_id, cfg.distributed_backend)


def patch_fairseq_torchrun_detection() -> None:
    """Make fairseq's launcher detection handle torchrun on CPU-only machines (idempotent)."""
    from fairseq.distributed import utils as dist_utils

    original = dist_utils.infer_init_method
    if getattr(original, "_genre_cpu_torchrun", False):
        return

    def infer_init_method(cfg, force_distributed=False):
        world = torchrun_world_size(os.environ)
        if (
            world is not None
            and max(world, cfg.distributed_world_size) > 1
            and cfg.distributed_init_method is None
            and not cfg.tpu
            and torch.cuda.device_count() == 0
        ):
            init_from_torchrun_on_cpu(cfg, os.environ)
            return
        return original(cfg, force_distributed)

    infer_init_method._genre_cpu_torchrun = True
    infer_init_method.__doc__ = original.__doc__
    dist_utils.infer_init_method = infer_init_method


def patch_fairseq_broadcast_object() -> None:
    """Let ranks receive pickled objects (e.g. a loaded checkpoint) from rank 0 on torch >= 2.6 (idempotent)."""
    from fairseq.distributed import utils as dist_utils

    if getattr(dist_utils._broadcast_object_slow, "_genre_trusted", False):
        return

    def _broadcast_object_slow(obj, src_rank, group, dist_device):
        # fairseq's protocol (length, then bytes), unpickled with weights_only=False: see the module doc
        if dist_utils.get_rank(group) == src_rank:
            buffer = io.BytesIO()
            torch.save(obj, buffer)
            data = torch.ByteTensor(buffer.getbuffer()).to(dist_device)
            dist_utils.broadcast(torch.LongTensor([len(data)]).to(dist_device), src=src_rank, group=group)
            dist_utils.broadcast(data, src=src_rank, group=group)
            return obj
        length = torch.LongTensor([0]).to(dist_device)
        dist_utils.broadcast(length, src=src_rank, group=group)
        data = torch.ByteTensor(int(length.item())).to(dist_device)
        dist_utils.broadcast(data, src=src_rank, group=group)
        return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location="cpu", weights_only=False)

    _broadcast_object_slow._genre_trusted = True
    dist_utils._broadcast_object_slow = _broadcast_object_slow
