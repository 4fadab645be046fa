"""``GuardedTrainer``: detectron2's ``SimpleTrainer`` step with a check for non-finite losses
before the backward pass, and the count of skipped bad samples.

``SOLVER.NONFINITE_LOSS``:

* ``"error"`` (default): stop with ``FloatingPointError`` naming the non-finite loss terms, their
  values and the iteration (detectron2 itself raises only after the backward pass, and in
  multi-process training only on the main process, which leaves the others waiting);
* ``"skip"``: skip that iteration's backward pass and optimizer step, warn, and count it in
  EventStorage (``nonfinite_loss/skipped_steps``, total); after
  ``SOLVER.NONFINITE_LOSS_MAX_SKIPS`` consecutive skips stop with ``FloatingPointError``.

In multi-process training every process takes the same decision: the non-finite loss names
(and the skipped-sample counts) are gathered from all ranks each iteration.
"""
import logging
import time

import torch

from detectron2.engine import SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..data.mappers import pop_skipped

__all__ = ["GuardedTrainer"]

logger = logging.getLogger(__name__)


class GuardedTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose ``run_step`` checks the losses before the backward pass.

    Args:
        model, data_loader, optimizer: as ``SimpleTrainer``.
        nonfinite_loss (str): "error" or "skip".
        max_consecutive_skips (int): consecutive skipped steps that raise, with "skip".
    """

    def __init__(self, model, data_loader, optimizer, *, nonfinite_loss="error",
                 max_consecutive_skips=10):
        if nonfinite_loss not in ("error", "skip"):
            raise ValueError(
                "SOLVER.NONFINITE_LOSS={!r}; allowed: 'error' or 'skip'".format(nonfinite_loss)
            )
        super().__init__(model, data_loader, optimizer)
        self.nonfinite_loss = nonfinite_loss
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.consecutive_skips = 0
        self.skipped_steps = 0
        self.skipped_samples = 0

    def run_step(self):
        assert self.model.training, "[GuardedTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        skipped = pop_skipped(data)

        loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        bad = self._sync_step_status(loss_dict, skipped)
        if bad:
            self._skip_step(bad)
            return
        self.consecutive_skips = 0

        losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        losses.backward()
        if hasattr(self, "after_backward"):  # detectron2 after v0.6
            self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()

    def _sync_step_status(self, loss_dict, skipped):
        """Gather the non-finite losses and skipped-sample counts of every rank; record the
        skipped samples. Returns ``[(rank, name, value), ...]`` of non-finite losses."""
        bad = [
            (name, float(v.detach().float().sum()))
            for name, v in loss_dict.items()
            if not bool(torch.isfinite(v.detach()).all())
        ]
        statuses = [(bad, skipped)]
        if comm.get_world_size() > 1:
            statuses = comm.all_gather((bad, skipped))
        skipped_total = sum(s for _, s in statuses)
        if skipped_total or self.skipped_samples:
            self.skipped_samples += skipped_total
            get_event_storage().put_scalar(
                "data/skipped_samples", self.skipped_samples, smoothing_hint=False
            )
        return [(rank, name, value) for rank, (b, _) in enumerate(statuses) for name, value in b]

    def _skip_step(self, bad):
        iteration = self.iter
        desc = ", ".join(
            "{}={}{}".format(name, value, " (rank {})".format(rank) if comm.get_world_size() > 1
                             else "")
            for rank, name, value in bad
        )
        if self.nonfinite_loss == "error":
            raise FloatingPointError(
                "Non-finite loss at iteration {}: {}. Lower SOLVER.BASE_LR, check the data, or "
                "set SOLVER.NONFINITE_LOSS 'skip' to skip such steps.".format(iteration, desc)
            )
        self.optimizer.zero_grad()
        self.consecutive_skips += 1
        self.skipped_steps += 1
        get_event_storage().put_scalar(
            "nonfinite_loss/skipped_steps", self.skipped_steps, smoothing_hint=False
        )
        logger.warning(
            "Non-finite loss at iteration %d: %s; optimizer step skipped (%d in a row, %d in all; "
            "SOLVER.NONFINITE_LOSS_MAX_SKIPS=%d).", iteration, desc, self.consecutive_skips,
            self.skipped_steps, self.max_consecutive_skips,
        )
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise FloatingPointError(
                "Non-finite loss in {} consecutive iterations (the last: {}: {}); stopping "
                "(SOLVER.NONFINITE_LOSS_MAX_SKIPS={}). Lower SOLVER.BASE_LR or check the "
                "data.".format(self.consecutive_skips, iteration, desc, self.max_consecutive_skips)
            )
