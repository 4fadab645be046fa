"""``LazyTrainer``: the plugin's trainer for Python configs (detectron2's LazyConfig), the
counterpart of :class:`~frcnn_plugin.engine.trainer.Trainer` (YAML) with the same reliability
features, built from the same parts:

* checkpoints by :class:`~frcnn_plugin.engine.checkpoint.AtomicCheckpointer`, with the
  optimizer state (:class:`~frcnn_plugin.engine.trainer.TrainerStateMixin`);
* the non-finite loss policy (:class:`~frcnn_plugin.engine.train_loop.NonFiniteLossGuard`) and
  the replica check, inserted by :func:`~frcnn_plugin.engine.trainer.add_plugin_hooks`;
* multi-process training on CPUs, and the training step (detectron2's ``SimpleTrainer`` or
  ``AMPTrainer``), by :func:`~frcnn_plugin.engine.trainer.build_step_trainer`.

The config has detectron2's layout (``model``, ``optimizer``, ``lr_multiplier``,
``dataloader.train/test/evaluator``, ``train`` as in the model zoo's ``common/train.py``) and
these optional keys of ``train`` (the YAML keys in brackets):

* ``seed`` (``SEED``), ``nonfinite_loss`` "error" or "skip" (``SOLVER.NONFINITE_LOSS``),
  ``nonfinite_loss_max_skips`` (``SOLVER.NONFINITE_LOSS_MAX_SKIPS``), ``sync_check_period``
  (``SOLVER.SYNC_CHECK_PERIOD``), ``vis_period``, ``vis_num_images``, ``vis_score_thresh``
  (``TEST.VIS_*``: pictures of predictions on the first images of ``dataloader.test``, in
  TensorBoard), ``amp.enabled`` with ``amp.precision`` "auto", "bf16" or "fp16"
  (``SOLVER.AMP``: mixed-precision training, :mod:`frcnn_plugin.modeling.precision`).

The objects are built as detectron2's ``tools/lazyconfig_train_net.py`` builds them, in the
order of ``DefaultTrainer`` (model, optimizer, training loader, then the training step and the LR
scheduler), so a Python config twin of a YAML config trains identically from the same seed.
"""
import logging
import os
import weakref

from detectron2.config import instantiate
from detectron2.engine import TrainerBase, hooks
from detectron2.engine.defaults import default_writers
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.solver import LRMultiplier
from detectron2.utils import comm

from ..errors import ConfigError
from ..inspection.cli import LazyInspectionConfig
from ..lazy import lazy_config_errors
from ..modeling.precision import apply_autocast, lazy_training_precision, uses_amp_trainer
from ..modeling.tta import FRCNNGeneralizedRCNNWithTTA, tta_config
from .checkpoint import AtomicCheckpointer
from .train_loop import NonFiniteLossGuard
from .trainer import TrainerStateMixin, add_plugin_hooks, build_step_trainer
from .vis_hook import PredictionVisHook, insert_vis_hook

__all__ = ["LazyTrainer", "build_lazy_model", "lazy_test", "lazy_test_with_tta"]

logger = logging.getLogger(__name__)

_REQUIRED = ("model", "dataloader", "optimizer", "lr_multiplier", "train")


def check_lazy_config(cfg, eval_only=False):
    """The top-level keys the lazy tool needs; a missing one is a :class:`ConfigError`."""
    needed = ("model", "dataloader", "train") if eval_only else _REQUIRED
    missing = [k for k in needed if k not in cfg]
    if missing:
        raise ConfigError(
            "The Python config lacks {}; allowed: a config with model, dataloader, optimizer, "
            "lr_multiplier and train, as detectron2's model zoo (e.g. "
            "configs/lazy/vgg16_frcnn_shapes_demo.py)".format(", ".join(missing))
        )
    for key in ("output_dir", "max_iter", "device"):
        if key not in cfg.train:
            raise ConfigError("train.{} is missing; allowed: detectron2's common/train.py keys "
                              "(output_dir, init_checkpoint, max_iter, device, ...)".format(key))


def build_lazy_model(cfg):
    """``instantiate(cfg.model)`` on ``cfg.train.device``, a bad argument as ConfigError."""
    with lazy_config_errors("model"):
        model = instantiate(cfg.model)
    model.to(cfg.train.device)
    logger.info("Model:\n%s", model)
    return model


def lazy_test(cfg, model):
    """Evaluate ``model`` on ``dataloader.test`` with ``dataloader.evaluator`` (the plugin's
    configs: chosen by the data set's ``evaluator_type``); returns the results (``{}`` when the
    config has no evaluator)."""
    if "evaluator" not in cfg.dataloader or "test" not in cfg.dataloader:
        logger.warning("The config has no dataloader.test / dataloader.evaluator: no evaluation")
        return {}
    with lazy_config_errors("the test data loader"):
        loader = instantiate(cfg.dataloader.test)
    with lazy_config_errors("the evaluator"):
        evaluator = instantiate(cfg.dataloader.evaluator)
    results = inference_on_dataset(model, loader, evaluator)
    if comm.is_main_process():
        print_csv_format(results)
    return results


def lazy_test_with_tta(cfg, model):
    """Evaluate ``model`` with test-time augmentation when the config's ``test.aug.enabled``
    is true (detectron2's ``TEST.AUG`` keys in lower case: ``test.aug.min_sizes``,
    ``max_size``, ``flip``): the model wrapped in
    :class:`~frcnn_plugin.modeling.tta.FRCNNGeneralizedRCNNWithTTA` on ``dataloader.test``,
    the evaluator writing to ``train.output_dir/inference_TTA``; the results' keys suffixed
    with ``_TTA``. ``{}`` when TTA is off or the config has no ``test.aug``."""
    aug = cfg.get("test", {}).get("aug", {})
    if not aug.get("enabled", False) or "evaluator" not in cfg.dataloader:
        return {}
    roi_heads = getattr(getattr(model, "module", model), "roi_heads", None)
    predictor = getattr(roi_heads, "box_predictor", None)
    tta_cfg = tta_config(  # TEST.AUG and the keys the TTA reads, from the built model
        num_classes=getattr(roi_heads, "num_classes", 0),
        nms_thresh=getattr(predictor, "test_nms_thresh", 0.5),
        detections_per_image=getattr(predictor, "test_topk_per_image", 100),
        min_sizes=aug.get("min_sizes", ()), max_size=aug.get("max_size", 4000),
        flip=aug.get("flip", True), mask_on=bool(getattr(roi_heads, "mask_on", False)))
    logger.info("Running inference with test-time augmentation ...")
    tta_model = FRCNNGeneralizedRCNNWithTTA(tta_cfg, model)
    with lazy_config_errors("the test data loader"):
        loader = instantiate(cfg.dataloader.test)
    evaluator_cfg = cfg.dataloader.evaluator  # its interpolations need its place in cfg
    has_dir = "output_dir" in evaluator_cfg
    old_dir = evaluator_cfg._get_node("output_dir")._value() if has_dir else None
    try:
        if has_dir:
            evaluator_cfg.output_dir = os.path.join(cfg.train.output_dir, "inference_TTA")
        with lazy_config_errors("the evaluator"):
            evaluator = instantiate(evaluator_cfg)
    finally:
        if has_dir:
            evaluator_cfg.output_dir = old_dir
    results = inference_on_dataset(tta_model, loader, evaluator)
    if comm.is_main_process():
        print_csv_format(results)
    return {k + "_TTA": v for k, v in results.items()}


class LazyTrainer(TrainerStateMixin, TrainerBase):
    """Train a Python config's model with the plugin's reliability features (module doc)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg, train = cfg, cfg.train
        self.nonfinite_guard = NonFiniteLossGuard(
            train.get("nonfinite_loss", "error"), train.get("nonfinite_loss_max_skips", 10)
        )
        # detectron2's tools/lazyconfig_train_net.py: model, optimizer, training loader (the
        # order of DefaultTrainer), then the training step around them
        model = build_lazy_model(cfg)
        # train.amp: bf16 in the model's own autocast, fp16 on CUDA in detectron2's AMPTrainer
        dtype = lazy_training_precision(train)
        amp_trainer = uses_amp_trainer(dtype, train.device)
        if dtype is not None and not amp_trainer:
            apply_autocast(model, train_dtype=dtype)
        cfg.optimizer.params.model = model
        with lazy_config_errors("the optimizer"):
            optimizer = instantiate(cfg.optimizer)
        with lazy_config_errors("the training data loader"):
            data_loader = instantiate(cfg.dataloader.train)
        self._trainer = build_step_trainer(
            model, data_loader, optimizer, device=train.device,
            amp=amp_trainer, **train.get("ddp", {}),
        )
        with lazy_config_errors("the LR schedule"):
            multiplier = instantiate(cfg.lr_multiplier)
        self.scheduler = LRMultiplier(optimizer, multiplier=multiplier, max_iter=train.max_iter)
        self.checkpointer = AtomicCheckpointer(
            self._trainer.model, train.output_dir, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = train.max_iter
        self.register_hooks(self.build_hooks())

    model = property(lambda self: self._trainer.model)
    optimizer = property(lambda self: self._trainer.optimizer)
    data_loader = property(lambda self: self._trainer.data_loader)

    def build_hooks(self):
        """detectron2's ``lazyconfig_train_net.py`` hooks (timer, LR scheduler, checkpointer,
        evaluation, writers) with the plugin's (:func:`add_plugin_hooks`)."""
        train = self.cfg.train

        def test_and_save_results():
            self._last_eval_results = lazy_test(self.cfg, self.model)
            return self._last_eval_results

        checkpointer = train.get("checkpointer", {})
        ret = [
            hooks.IterationTimer(),
            hooks.LRScheduler(),
            hooks.PeriodicCheckpointer(
                self.checkpointer, checkpointer.get("period", 5000),
                max_to_keep=checkpointer.get("max_to_keep", None),
            ) if comm.is_main_process() else None,
            hooks.EvalHook(train.get("eval_period", 0), test_and_save_results),
            hooks.PeriodicWriter(
                default_writers(train.output_dir, train.max_iter),
                period=train.get("log_period", 20),
            ) if comm.is_main_process() else None,
        ]
        ret = add_plugin_hooks(self, [h for h in ret if h is not None], self.nonfinite_guard,
                               train.get("sync_check_period", 0))
        if train.get("vis_period", 0) > 0:
            insert_vis_hook(ret, PredictionVisHook(
                period=train.vis_period,
                dataset_name=self.cfg.dataloader.test.dataset.names,
                input_cfg=LazyInspectionConfig(self.cfg),
                num_images=train.get("vis_num_images", 4),
                score_thresh=train.get("vis_score_thresh", 0.5),
            ))
        return ret

    def resume_or_load(self, resume=True):
        """Resume from ``train.output_dir/last_checkpoint`` (``resume``) or load
        ``train.init_checkpoint``."""
        self.checkpointer.resume_or_load(self.cfg.train.get("init_checkpoint", ""),
                                         resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
        self._log_resumed(resume)

    def run_step(self):
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def train(self):
        """Train; returns the results of the last evaluation (after the final iteration)."""
        super().train(self.start_iter, self.max_iter)
        return getattr(self, "_last_eval_results", None)
