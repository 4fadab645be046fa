"""``NonFiniteLossGuard``: the non-finite loss policy and the skipped-sample counter as a
detectron2 hook, for ``SimpleTrainer`` and ``AMPTrainer`` alike (detectron2 v0.6 and main),
without replacing their ``run_step``.

``SOLVER.NONFINITE_LOSS``:

* ``"error"`` (default): stop with ``FloatingPointError`` naming the non-finite loss terms, their
  values and the iteration, before the backward pass (detectron2 itself raises only after it,
  from its metrics writer);
* ``"skip"``: leave the parameters, the buffers (batch-norm statistics) and the optimizer state
  of that iteration untouched (no update, no momentum or weight-decay step), warn, and count it in EventStorage
  (``nonfinite_loss/skipped_steps``, total); after ``SOLVER.NONFINITE_LOSS_MAX_SKIPS``
  consecutive skips stop with ``FloatingPointError``.

How, through documented extension points only:

* a forward hook on the trainer's model (training mode) checks the loss dict with one
  device-to-host copy. With "error" in one process it raises there. Otherwise it replaces the
  non-finite terms by finite ones (zeros, still in the graph), so that detectron2's own metrics
  writer (``_write_metrics``, synchronous or asynchronous) does not raise, and marks the step;
* a step pre-hook on the optimizer (``torch.optim.Optimizer.register_step_pre_hook``) sets the
  gradient of every parameter of a marked step to None: torch's optimizers skip parameters
  without a gradient, so the step changes nothing. With ``AMPTrainer`` the ``GradScaler`` also
  skips such a step by itself (non-finite gradients);
* multi-process (DistributedDataParallel): there is no collective of the guard's own. A process
  with a non-finite loss and "skip" adds to its loss a term whose value is 0 and whose gradient
  is NaN on one small "sentinel" parameter; DDP's gradient all-reduce carries it to every
  process, whose step pre-hook sees the non-finite sentinel gradient and skips the same step
  (one scalar check per step). With "error" the process raises, and the plugin's
  :func:`~frcnn_plugin.engine.launch.launch` stops the others with a
  ``DistributedTrainingError`` naming it.

A non-finite forward pass (a NaN or Inf input pixel, or overflowing activations) ends in
non-finite losses, not in an exception: the plugin's RPN turns non-finite outputs into non-finite
loss terms (:meth:`~frcnn_plugin.modeling.rpn.FRCNNRPN.nonfinite_outputs_to_losses`), so the
policy applies to it too. A training forward pass updates batch-norm statistics as it runs;
with "skip" the guard copies the model's buffers before each forward pass and puts them back
when the step is skipped.

Skipped training samples (:mod:`frcnn_plugin.data.mappers`) arrive as a marker in the batch; a
forward pre-hook removes it before the model sees the batch and counts it as
``data/skipped_samples`` (total of this process: no per-iteration gather; in multi-process
training the main process logs its own count, each process warns about its own skips).
"""
import logging
import math
from typing import List, Optional, Tuple

import torch

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..config_checks import NONFINITE_LOSS_MODES
from ..data.mappers import pop_skipped
from ..errors import ConfigError

__all__ = ["NonFiniteLossGuard"]

logger = logging.getLogger(__name__)


class _NaNGradient(torch.autograd.Function):
    """Value 0, gradient NaN for ``param``: marks a step as non-finite on every process."""

    @staticmethod
    def forward(ctx, param):
        ctx.shape = param.shape
        return param.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        return grad.new_full(ctx.shape, math.nan)


def _unwrap(model):
    return getattr(model, "module", model)  # DistributedDataParallel


class NonFiniteLossGuard(HookBase):
    """Hook that applies ``SOLVER.NONFINITE_LOSS`` and counts skipped samples (module doc).

    Register it before the writers (:class:`~frcnn_plugin.engine.trainer.Trainer` puts it
    first); it installs its model and optimizer hooks in ``before_train`` and removes them in
    ``after_train``.

    Args:
        mode (str): "error" or "skip".
        max_consecutive_skips (int): consecutive skipped steps that raise, with "skip".
    """

    def __init__(self, mode: str = "error", max_consecutive_skips: int = 10):
        if mode not in NONFINITE_LOSS_MODES:
            raise ConfigError(
                "SOLVER.NONFINITE_LOSS={!r} is invalid; allowed: {}".format(
                    mode, " or ".join(repr(m) for m in NONFINITE_LOSS_MODES)
                )
            )
        if int(max_consecutive_skips) < 1:
            raise ConfigError(
                "SOLVER.NONFINITE_LOSS_MAX_SKIPS={!r} is invalid; allowed: an integer >= 1".format(
                    max_consecutive_skips
                )
            )
        self.mode = mode
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.skipped_samples = 0
        self._handles: List = []
        self._sentinel: Optional[torch.nn.Parameter] = None
        self._bad: Optional[List[Tuple[str, float]]] = None  # this process's non-finite terms
        self._skip = False  # the current step is skipped (set by either hook)
        self._buffers: List[Tuple[torch.Tensor, torch.Tensor]] = []  # (buffer, copy) with "skip"

    # ------------------------------------------------------------------------ installation
    def before_train(self):
        model, optimizer = self.trainer.model, self.trainer.optimizer
        params = [p for p in _unwrap(model).parameters() if p.requires_grad]
        self._sentinel = min(params, key=lambda p: p.numel()) if params else None
        self._handles = [
            model.register_forward_pre_hook(self._before_forward),
            model.register_forward_hook(self._after_forward),
            optimizer.register_step_pre_hook(self._before_optimizer_step),
        ]

    def after_train(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ------------------------------------------------------------------------ model hooks
    def _before_forward(self, module, args):
        if module.training and self.mode == "skip":
            self._buffers = [(b, b.detach().clone()) for b in _unwrap(module).buffers()]
        if module.training and args and isinstance(args[0], (list, tuple)):
            skipped = pop_skipped(args[0])
            if skipped:
                self.skipped_samples += skipped
                get_event_storage().put_scalar(
                    "data/skipped_samples", self.skipped_samples, smoothing_hint=False
                )

    def _after_forward(self, module, args, output):
        if not module.training:
            return None
        losses = output if isinstance(output, dict) else {"total_loss": output}
        if not losses:
            return None
        self._bad, self._skip = None, False
        values = torch.stack([v.detach().float().sum() for v in losses.values()])
        if bool(torch.isfinite(values).all()):  # the one device-to-host copy of a good step
            return None
        self._bad = [(k, float(v)) for k, v in zip(losses, values.tolist()) if not math.isfinite(v)]
        distributed = comm.get_world_size() > 1
        if self.mode == "error":
            raise FloatingPointError(self._error_message(self._bad))
        self._skip = True
        finite = {
            k: torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) for k, v in losses.items()
        }
        if distributed and self._sentinel is not None:
            first = next(iter(finite))
            finite[first] = finite[first] + _NaNGradient.apply(self._sentinel)
        return finite if isinstance(output, dict) else finite["total_loss"]

    # ------------------------------------------------------------------------ optimizer hook
    def _before_optimizer_step(self, optimizer, args, kwargs):
        if comm.get_world_size() > 1 and not self._skip and self._sentinel is not None:
            grad = self._sentinel.grad
            self._skip = grad is not None and not bool(torch.isfinite(grad).all())
        if self._skip:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
        return None

    # ------------------------------------------------------------------------ accounting
    def after_step(self):
        if not self._skip:
            self.consecutive_skips = 0
            return
        self._skip = False
        with torch.no_grad():  # the batch-norm statistics of the skipped forward pass
            for buffer, saved in self._buffers:
                buffer.copy_(saved)
        self.consecutive_skips += 1
        self.skipped_steps += 1
        get_event_storage().put_scalar(
            "nonfinite_loss/skipped_steps", self.skipped_steps, smoothing_hint=False
        )
        desc = self._describe(self._bad)
        logger.warning(
            "Non-finite loss at iteration %d: %s; optimizer step skipped (%d in a row, %d in all; "
            "SOLVER.NONFINITE_LOSS_MAX_SKIPS=%d).", self.trainer.iter, desc,
            self.consecutive_skips, self.skipped_steps, self.max_consecutive_skips,
        )
        self._bad = None
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise FloatingPointError(
                "Non-finite loss in {} consecutive iterations (the last: {}: {}); stopping "
                "(SOLVER.NONFINITE_LOSS_MAX_SKIPS={}). Lower SOLVER.BASE_LR or check the "
                "data.".format(self.consecutive_skips, self.trainer.iter, desc,
                               self.max_consecutive_skips)
            )

    def _describe(self, bad: Optional[List[Tuple[str, float]]]) -> str:
        if not bad:
            return "on another process (the gradients carry it)"
        rank = " (rank {})".format(comm.get_rank()) if comm.get_world_size() > 1 else ""
        return ", ".join("{}={}{}".format(name, value, rank) for name, value in bad)

    def _error_message(self, bad) -> str:
        return (
            "Non-finite loss at iteration {}: {}. Lower SOLVER.BASE_LR, check the data, or set "
            "SOLVER.NONFINITE_LOSS 'skip' to skip such steps.".format(
                self.trainer.iter, self._describe(bad)
            )
        )
