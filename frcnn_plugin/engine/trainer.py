"""detectron2's ``DefaultTrainer`` with the evaluator chosen from the data set's metadata, and the
plugin's reliability features (the README (Reliability)):

* checked data (:mod:`frcnn_plugin.data.checks`) and skipped unreadable training images
  (:mod:`frcnn_plugin.data.mappers`);
* crash-safe checkpoints (:class:`~frcnn_plugin.engine.checkpoint.AtomicCheckpointer`);
* the non-finite loss policy and the skipped-sample counter, as a hook
  (:class:`~frcnn_plugin.engine.train_loop.NonFiniteLossGuard`), with detectron2's own
  ``SimpleTrainer`` or ``AMPTrainer``;
* multi-process training on CPUs (DistributedDataParallel without ``device_ids``) and an optional
  replica check (:class:`~frcnn_plugin.engine.hooks.ReplicaSyncCheck`).
"""
import collections
import contextlib
import functools
import logging
import os
import weakref

import torch

from detectron2.data import DatasetMapper, MetadataCatalog, build_detection_train_loader
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    create_ddp_model,
    defaults,
    hooks as d2_hooks,
)
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils import comm

from ..data import prepare_dataset
from ..data.checks import load_test_dataset_dicts, load_train_dataset_dicts
from ..data.dataset_mapper import FRCNNDatasetMapper
from ..data.loaders import build_frcnn_test_loader, wrap_train_mapper
from ..modeling.precision import apply_precision, training_precision, uses_amp_trainer
from ..modeling.tta import FRCNNGeneralizedRCNNWithTTA
from .checkpoint import AtomicCheckpointer
from .hooks import ReplicaSyncCheck
from .train_loop import NonFiniteLossGuard
from .vis_hook import maybe_add_vis_hook

__all__ = [
    "Trainer",
    "TrainerStateMixin",
    "add_plugin_hooks",
    "build_evaluator",
    "build_step_trainer",
    "create_plugin_ddp_model",
    "evaluator_for_dataset",
    "has_detectron2_cpp_ops",
]

logger = logging.getLogger(__name__)

EVALUATOR_TYPES = ("coco", "pascal_voc")


def has_detectron2_cpp_ops() -> bool:
    """False when detectron2's C++ extension is missing or is the set-up's placeholder."""
    try:  # a probe, here: the extension is optional (absent in a pure-Python build)
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "IS_FRCNN_PLACEHOLDER", False)


def build_evaluator(cfg, dataset_name, output_folder=None):
    """:func:`evaluator_for_dataset` writing to ``OUTPUT_DIR/inference/<data set>`` unless
    ``output_folder`` is given."""
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    return evaluator_for_dataset(dataset_name, output_folder)


def evaluator_for_dataset(dataset_name, output_dir=None):
    """Build the evaluator that the data set's ``evaluator_type`` metadata names.

    ``"coco"`` -> :class:`COCOEvaluator` (boxes; its fast C++ path only when detectron2's C++
    ops are present), ``"pascal_voc"`` -> :class:`PascalVOCDetectionEvaluator`. Plain arguments,
    so that Python configs use it as ``dataloader.evaluator``.
    """
    prepare_dataset(dataset_name)
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    if evaluator_type == "coco":
        return COCOEvaluator(
            dataset_name,
            tasks=("bbox",),
            distributed=True,
            output_dir=output_dir,
            use_fast_impl=has_detectron2_cpp_ops(),
        )
    if evaluator_type == "pascal_voc":
        return PascalVOCDetectionEvaluator(dataset_name)
    raise ValueError(
        "No evaluator for data set {!r}: its metadata evaluator_type is {!r}; allowed: {}. "
        "Register it with one of these types (e.g. register_coco_instances) or remove it from "
        "DATASETS.TEST.".format(dataset_name, evaluator_type, list(EVALUATOR_TYPES))
    )


def create_plugin_ddp_model(model, device, **kwargs):
    """detectron2's ``create_ddp_model``, also for CPU models: DistributedDataParallel without
    ``device_ids`` (detectron2 sets ``device_ids=[local rank]``, which DDP refuses for a CPU
    model). One process: the model as it is."""
    if comm.get_world_size() > 1 and torch.device(device).type == "cpu":
        kwargs = dict(kwargs, device_ids=None)
    return create_ddp_model(model, **kwargs)


def build_step_trainer(model, data_loader, optimizer, *, device, amp=False, **ddp_kwargs):
    """What ``DefaultTrainer.__init__`` and detectron2's ``tools/lazyconfig_train_net.py`` do
    with the model, optimizer and training loader they built: the model in
    DistributedDataParallel when there are several processes (:func:`create_plugin_ddp_model`),
    then detectron2's ``AMPTrainer`` (``amp``) or ``SimpleTrainer``, whose ``run_step`` is the
    training step. ``amp`` is detectron2's float16 ``AMPTrainer`` (CUDA); bf16 training is
    the model's own autocast (:mod:`frcnn_plugin.modeling.precision`) with ``SimpleTrainer``."""
    model = create_plugin_ddp_model(model, device, **ddp_kwargs)
    return (AMPTrainer if amp else SimpleTrainer)(model, data_loader, optimizer)


@contextlib.contextmanager
def _model_autocast_in_default_trainer(cfg):
    """Where training runs in the model's own autocast (bf16, :meth:`Trainer.build_model`), make
    ``DefaultTrainer.__init__``, which picks ``AMPTrainer`` whenever ``SOLVER.AMP.ENABLED``,
    take ``SimpleTrainer`` (detectron2's ``AMPTrainer`` is float16 autocast with a
    ``GradScaler``, CUDA only): the name ``AMPTrainer`` in ``detectron2.engine.defaults`` is
    replaced for the duration of the call, as :func:`_cpu_ddp_in_default_trainer` does for
    ``create_ddp_model`` (the README, "detectron2 internals the plugin relies on"). fp32, or
    fp16 on CUDA: nothing changes."""
    if not cfg.SOLVER.AMP.ENABLED or uses_amp_trainer(training_precision(cfg), cfg.MODEL.DEVICE):
        yield
        return
    original = defaults.AMPTrainer
    defaults.AMPTrainer = SimpleTrainer
    try:
        yield
    finally:
        defaults.AMPTrainer = original


@contextlib.contextmanager
def _cpu_ddp_in_default_trainer(device):
    """In multi-process training on CPUs, make ``DefaultTrainer.__init__`` wrap the model with
    :func:`create_plugin_ddp_model` (no ``device_ids``) instead of detectron2's
    ``create_ddp_model`` (``device_ids=[local rank]``, refused by DistributedDataParallel for a
    CPU model). ``DefaultTrainer`` offers no method to override between building the model and
    wrapping it, so the name ``create_ddp_model`` in ``detectron2.engine.defaults``, which
    ``__init__`` looks up when it runs, is replaced for the duration of the call (the README,
    "detectron2 internals the plugin relies on"). One process, or GPUs: nothing changes."""
    if comm.get_world_size() == 1 or torch.device(device).type != "cpu":
        yield
        return

    original = defaults.create_ddp_model
    defaults.create_ddp_model = functools.partial(create_plugin_ddp_model, device=device)
    try:
        yield
    finally:
        defaults.create_ddp_model = original


# the replica check goes after the hooks that change or save the weights of a step and before
# those that evaluate or write it
_BEFORE_SYNC_CHECK = (d2_hooks.LRScheduler, d2_hooks.PreciseBN, d2_hooks.PeriodicCheckpointer)
_AFTER_SYNC_CHECK = (d2_hooks.EvalHook, d2_hooks.PeriodicWriter)


def add_plugin_hooks(trainer, hooks, nonfinite_guard, sync_check_period=0):
    """Insert the plugin's hooks into a trainer's hook list (in place): the non-finite loss
    guard first (before the writers) and, in multi-process training with a period > 0, the
    replica check right after the last LR scheduler, precise-BN or checkpointer hook (on
    processes other than the main one, which have no checkpointer: after the LR scheduler),
    before the evaluation and the writers."""
    hooks.insert(0, nonfinite_guard)
    if sync_check_period > 0 and comm.get_world_size() > 1:
        after = [i for i, h in enumerate(hooks) if isinstance(h, _BEFORE_SYNC_CHECK)]
        before = [i for i, h in enumerate(hooks) if isinstance(h, _AFTER_SYNC_CHECK)]
        index = after[-1] + 1 if after else (before[0] if before else len(hooks))
        hooks.insert(index, ReplicaSyncCheck(sync_check_period))
    return hooks


class TrainerStateMixin:
    """Checkpointed trainer state with the optimizer's, for a ``TrainerBase`` holding a
    ``SimpleTrainer``/``AMPTrainer`` as ``self._trainer``, and a ``resume_or_load`` that logs
    what was resumed; shared by the YAML and the LazyConfig trainers."""

    def _log_resumed(self, resume):
        if resume and self.checkpointer.has_checkpoint():
            logger.info(
                "Resumed from %s: iteration %d done, continuing at %d; optimizer state for %d "
                "parameter tensors; LR scheduler at step %d",
                self.checkpointer.get_checkpoint_file(), self.iter, self.start_iter,
                len(self.optimizer.state), getattr(self.scheduler, "last_epoch", -1),
            )

    def state_dict(self):
        """Iteration, hook states (LR scheduler) and, under ``_trainer``, the optimizer state.
        detectron2 v0.6's DefaultTrainer leaves the optimizer out of its checkpoints; upstream
        main adds it under the same key, so checkpoints of both fit."""
        ret = TrainerBase.state_dict(self)
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning(
                "The checkpoint has no optimizer state (written by detectron2 v0.6's "
                "DefaultTrainer); the optimizer starts afresh (momentum buffers lost)."
            )


class Trainer(TrainerStateMixin, DefaultTrainer):
    """``DefaultTrainer`` that builds the evaluator from the data set's ``evaluator_type``, with
    the reliability features listed in the module docstring."""

    def __init__(self, cfg):
        """``DefaultTrainer.__init__``; in multi-process training on CPUs with the model in
        DistributedDataParallel without ``device_ids`` (:func:`_cpu_ddp_in_default_trainer`)."""
        self.nonfinite_guard = NonFiniteLossGuard(
            cfg.SOLVER.NONFINITE_LOSS, cfg.SOLVER.NONFINITE_LOSS_MAX_SKIPS
        )
        with _cpu_ddp_in_default_trainer(cfg.MODEL.DEVICE), \
                _model_autocast_in_default_trainer(cfg):
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg):
        """detectron2's ``build_model``, run in the mixed precision of ``SOLVER.AMP`` (training)
        and ``TEST.AMP`` (evaluation) by :func:`~frcnn_plugin.modeling.precision.apply_precision`."""
        return apply_precision(cfg, super().build_model(cfg))

    def build_hooks(self):
        """DefaultTrainer's hooks, with :class:`AtomicCheckpointer` as ``self.checkpointer``
        (detectron2 sets a ``DetectionCheckpointer`` just before calling this), the
        non-finite loss guard first (before the writers), the replica check and the picture
        hook when configured."""
        self.checkpointer = AtomicCheckpointer(
            self._trainer.model, self.cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )
        hooks = add_plugin_hooks(
            self, super().build_hooks(), self.nonfinite_guard, self.cfg.SOLVER.SYNC_CHECK_PERIOD
        )
        maybe_add_vis_hook(self, hooks)
        return hooks

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        self._log_resumed(resume)

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's train loader over the checked data set, skipping unreadable images;
        :class:`FRCNNDatasetMapper` records each sample's crop/resize scale."""
        dataset, mapper = wrap_train_mapper(
            FRCNNDatasetMapper(cfg, True), load_train_dataset_dicts(cfg),
            cfg.DATALOADER.MAX_CONSECUTIVE_BAD_SAMPLES, seed=max(cfg.SEED, 0),
        )
        return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's test loader; missing images fail before evaluation, unreadable ones
        with an error naming the file."""
        return build_frcnn_test_loader(
            load_test_dataset_dicts(cfg, dataset_name),
            mapper=DatasetMapper(cfg, False),
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            dataset_name=dataset_name,
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Evaluate ``model`` with test-time augmentation (``TEST.AUG``) on every data set of
        ``DATASETS.TEST``, as detectron2's ``tools/train_net.py`` does: the model wrapped in
        :class:`~frcnn_plugin.modeling.tta.FRCNNGeneralizedRCNNWithTTA`, the evaluators writing
        to ``OUTPUT_DIR/inference_TTA``, each result's key suffixed with ``_TTA``."""
        logger.info("Running inference with test-time augmentation ...")
        model = FRCNNGeneralizedRCNNWithTTA(cfg, model)
        evaluators = [
            cls.build_evaluator(
                cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return collections.OrderedDict((k + "_TTA", v) for k, v in res.items())

    def train(self):
        """Train; returns the results of the last evaluation (the one after the final
        iteration), which detectron2's DefaultTrainer only returns with TEST.EXPECTED_RESULTS."""
        super().train()
        return getattr(self, "_last_eval_results", None)
