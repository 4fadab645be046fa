"""``ReplicaSyncCheck``: in multi-process training, check that every process holds the same
parameters (``SOLVER.SYNC_CHECK_PERIOD``)."""
import hashlib
import logging

from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["ReplicaSyncCheck", "parameter_digest"]

logger = logging.getLogger(__name__)


def parameter_digest(model):
    """SHA-1 of every parameter's bytes, in ``named_parameters`` order (buffers excluded: with
    ``broadcast_buffers=False`` batch-norm statistics differ across processes by design)."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    h = hashlib.sha1()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class ReplicaSyncCheck(HookBase):
    """Every ``period`` iterations, gather the parameter digest of every rank and raise
    ``RuntimeError`` if they differ; logs one line per check. Does nothing in one process.

    All ranks must register it (it runs a collective).
    """

    def __init__(self, period):
        self.period = int(period)
        self.num_checks = 0

    def after_step(self):
        if self.period <= 0 or comm.get_world_size() == 1:
            return
        if (self.trainer.iter + 1) % self.period != 0:
            return
        digests = comm.all_gather(parameter_digest(self.trainer.model))
        self.num_checks += 1
        if len(set(digests)) != 1:
            raise RuntimeError(
                "Model replicas diverged at iteration {}: parameter digests per rank {}".format(
                    self.trainer.iter, digests
                )
            )
        logger.info(
            "Replica check at iteration %d: parameters identical on %d processes (sha1 %s)",
            self.trainer.iter, len(digests), digests[0][:12],
        )
