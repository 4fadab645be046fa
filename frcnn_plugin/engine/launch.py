"""Multi-process training on GPUs (NCCL) or CPUs (GLOO), with detectron2 v0.6 or upstream main.

:func:`launch` has detectron2's ``launch`` signature and calls detectron2's own ``launch``
wherever it can start the processes asked for: with CUDA (one process per GPU, NCCL), and on a
machine without CUDA when the installed detectron2's ``launch`` starts CPU processes itself
(upstream main: GLOO backend, ``comm.create_local_process_group``). Each process of a CPU job
gets ``cpu_count / num_processes`` torch threads, so that processes do not oversubscribe the
cores, and waits for the others at the end before it leaves the process group.

Fallback: where detectron2's ``launch`` cannot start CPU processes (v0.6, whose worker asserts
CUDA; or CUDA present but ``use_cuda=False``, where detectron2 would pick NCCL), :func:`launch`
starts them itself with a minimal worker: ``init_process_group("gloo")`` with global rank
``machine_rank * num_processes + local_rank``, detectron2's local process group (v0.6 has no
``create_local_process_group``: its worker's own steps, ``comm._LOCAL_PROCESS_GROUP``), then
the same per-process call. Which path is taken is decided by what the installed detectron2 can
do (:func:`detectron2_launches_cpu_processes`), not by its version string.

When any process fails (an exception, or killed by a signal), the others are terminated and
:func:`launch` raises :class:`DistributedTrainingError` naming the process and the cause; no
process is left waiting in a collective.
"""
import importlib
import logging
import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

__all__ = ["launch", "DistributedTrainingError", "DEFAULT_TIMEOUT",
           "detectron2_launches_cpu_processes"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


class DistributedTrainingError(RuntimeError):
    """A process of a multi-process job failed; the others were stopped."""


def _find_free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def detectron2_launches_cpu_processes() -> bool:
    """Whether the installed detectron2's ``launch`` runs its processes on a machine without
    CUDA: its worker (``detectron2.engine.launch._distributed_worker``) chooses the GLOO backend
    there and sets up the local process group with ``comm.create_local_process_group``
    (upstream main). detectron2 v0.6's worker asserts CUDA and uses NCCL only."""
    worker = getattr(importlib.import_module("detectron2.engine.launch"),
                     "_distributed_worker", None)
    code = getattr(worker, "__code__", None)
    return (hasattr(comm, "create_local_process_group") and code is not None
            and any(c in ("GLOO", "gloo") for c in code.co_consts))


class _CPUProcessMain:
    """``main_func(*args)`` in one process of a CPU job (picklable, for spawned processes):
    ``cpu_count / num_processes`` torch threads, and every process done with the process group
    before any leaves it (a process that tears the group down and exits while another still
    uses it can make that one abort in gloo's teardown: seen once in CI, "terminate called
    without an active exception", SIGABRT)."""

    def __init__(self, main_func, num_processes):
        self.main_func, self.num_processes = main_func, num_processes

    def __call__(self, *args):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.num_processes))
        self.main_func(*args)
        comm.synchronize()
        dist.destroy_process_group()


def launch(main_func, num_processes, num_machines=1, machine_rank=0, dist_url=None, args=(),
           timeout=DEFAULT_TIMEOUT, use_cuda=None):
    """Run ``main_func(*args)`` in ``num_processes`` processes on this machine (one if 1).

    Args:
        main_func: a picklable (module-level) function.
        num_processes (int): processes per machine: GPUs on a CUDA machine, CPU processes
            otherwise (``--num-gpus`` / ``--num-processes`` of ``tools/train_net.py``).
        num_machines, machine_rank, dist_url, args, timeout: as detectron2's ``launch``;
            ``dist_url="auto"`` picks a free local port (one machine only).
        use_cuda (bool or None): None = ``torch.cuda.is_available()``.

    Raises:
        DistributedTrainingError: a process failed; the message names it and the cause.
    """
    if num_processes < 1 or num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ValueError(
            "invalid process layout: num_processes={} (>= 1), num_machines={} (>= 1), "
            "machine_rank={} (in [0, num_machines))".format(
                num_processes, num_machines, machine_rank
            )
        )
    world_size = num_machines * num_processes
    if world_size == 1:
        return main_func(*args)
    use_cuda = torch.cuda.is_available() if use_cuda is None else use_cuda
    if dist_url == "auto" or not dist_url:
        if num_machines > 1:
            raise ValueError("dist_url must be given (tcp://HOST:PORT) with several machines")
        dist_url = "tcp://127.0.0.1:{}".format(_find_free_port())
    try:
        if not use_cuda:
            main_func = _CPUProcessMain(main_func, num_processes)
        if use_cuda or (not torch.cuda.is_available() and detectron2_launches_cpu_processes()):
            return d2_launch(main_func, num_processes, num_machines=num_machines,
                             machine_rank=machine_rank, dist_url=dist_url, args=args,
                             timeout=timeout)
        mp.start_processes(
            _cpu_worker,
            nprocs=num_processes,
            args=(main_func, world_size, num_processes, machine_rank, dist_url, args, timeout),
            daemon=False,
            start_method="spawn",
        )
    except mp.ProcessRaisedException as e:
        raise DistributedTrainingError(
            "Process {} (global rank {}) of {} failed; the others were stopped. "
            "Its error:{}".format(
                e.error_index, machine_rank * num_processes + e.error_index, world_size, e.msg
            )
        ) from None
    except mp.ProcessExitedException as e:
        raise DistributedTrainingError(
            "Process {} (global rank {}) of {} died ({}); the others were stopped. If it was "
            "killed (signal 9), the machine may be out of memory.".format(
                e.error_index, machine_rank * num_processes + e.error_index, world_size, e.msg
            )
        ) from None


# ----------------------------------------------------------------------- fallback (v0.6)
def _setup_local_process_group(num_processes, machine_rank, world_size):
    if hasattr(comm, "create_local_process_group"):  # detectron2 after v0.6
        comm.create_local_process_group(num_processes)
        return
    # v0.6: the steps of its own _distributed_worker
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_processes):
        pg = dist.new_group(list(range(i * num_processes, (i + 1) * num_processes)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg


def _cpu_worker(local_rank, process_main, world_size, num_processes, machine_rank, dist_url,
                args, timeout):
    """detectron2's ``_distributed_worker`` for CPU processes, where the installed detectron2
    has none (module doc)."""
    rank = machine_rank * num_processes + local_rank
    try:
        dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size,
                                rank=rank, timeout=timeout)
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    _setup_local_process_group(num_processes, machine_rank, world_size)
    comm.synchronize()
    process_main(*args)
