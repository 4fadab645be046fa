"""Python configs (detectron2's LazyConfig) for the plugin: loading with clear errors, and the
helpers that the configs under ``configs/lazy/`` use.

* :func:`load_lazy_config`: ``LazyConfig.load`` + ``key=value`` overrides, with the plugin's
  errors (a missing file, a config that does not run, an override of a key that does not
  exist, with the closest keys);
* :func:`checked_dataloader`: turns the ``dataloader`` of detectron2's
  ``model_zoo.get_config("common/data/coco.py")`` into the plugin's checked loaders
  (:mod:`frcnn_plugin.data.loaders`), with the same keys, so overrides such as
  ``dataloader.train.dataset.names=...`` keep working;
* :func:`multistep_lr_multiplier`: the LR schedule of a YAML config (``SOLVER.STEPS``,
  ``WARMUP_*``) as detectron2's ``WarmupParamScheduler``, step for step what
  ``build_lr_scheduler`` makes of it;
* :func:`is_lazy_config`: a ``.py`` file (Python config) or not (YAML);
* :func:`model_zoo_config`: detectron2's ``model_zoo.get_config``, also where
  ``detectron2.model_zoo`` cannot be imported: upstream detectron2 imports ``pkg_resources``
  there, which setuptools 81 and later no longer ship; the config files themselves are in the
  installed package (both builds ship ``common/models``, ``common/data/coco.py``,
  ``common/optim.py``, ``common/train.py``, ``common/coco_schedule.py``).
"""
import os

from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import DictConfig, OmegaConf

import detectron2
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig
from detectron2.solver import WarmupParamScheduler

from .config import check_config_file, suggest_keys
from .data.dataset_mapper import FRCNNDatasetMapper
from .data.loaders import (
    build_frcnn_test_loader,
    build_frcnn_train_loader,
    checked_train_dataset_dicts,
    test_dataset_dicts,
)
from .engine.trainer import evaluator_for_dataset
from .errors import ConfigError

__all__ = [
    "checked_dataloader",
    "is_lazy_config",
    "lazy_config_errors",
    "load_lazy_config",
    "model_zoo_config",
    "multistep_lr_multiplier",
]


def model_zoo_config(config_path):
    """``detectron2.model_zoo.get_config(config_path)`` for a Python config of the model zoo
    (e.g. ``"common/data/coco.py"``): a fresh copy each call.

    Where ``detectron2.model_zoo`` fails to import (``pkg_resources`` missing), the file is
    loaded from the installed package's ``model_zoo/configs`` folder with ``LazyConfig.load``,
    which is what ``get_config`` does.

    Raises:
        ConfigError: the installed detectron2 does not ship that file.
    """
    try:  # here, not at the top: detectron2.model_zoo imports pkg_resources (see above)
        from detectron2.model_zoo import get_config
    except ImportError:
        get_config = None
    if get_config is not None:
        try:
            return get_config(config_path)
        except RuntimeError as e:  # "<path> not available in Model Zoo!"
            raise ConfigError("{} (the installed detectron2 does not ship it)".format(e)) from e

    path = os.path.join(os.path.dirname(detectron2.__file__), "model_zoo", "configs", config_path)
    if not os.path.isfile(path):
        raise ConfigError("{} not available in the installed detectron2's model zoo ({} is "
                          "missing)".format(config_path, path))
    return LazyConfig.load(path)


def is_lazy_config(path) -> bool:
    """A Python config (``*.py``, LazyConfig) rather than a YAML one."""
    return str(path).endswith(".py")


def _all_keys(node, prefix=""):
    for k in node.keys():
        v = node._get_node(k)
        if isinstance(v, DictConfig):
            yield prefix + str(k)
            yield from _all_keys(v, prefix + str(k) + ".")
        else:
            yield prefix + str(k)


def _check_override_key(cfg, key):
    """An override may set an existing key, or a new argument of a ``LazyCall``
    (a node with ``_target_``); anything else is a typo."""
    if OmegaConf.select(cfg, key, default="__missing__", throw_on_missing=False) != "__missing__":
        return
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if OmegaConf.is_dict(node) and "_target_" in node:
        return
    keys = list(_all_keys(cfg))
    close = suggest_keys(key, keys)
    raise ConfigError(
        "Override {!r}: the config has no key {!r}{}".format(
            key, key, "; did you mean: {}?".format(", ".join(close)) if close else
            "; allowed: a key of the config (see it with LazyConfig.save or print(cfg))"
        )
    )


def load_lazy_config(path, overrides=()):
    """``LazyConfig.load(path)`` with ``key=value`` ``overrides`` applied
    (``LazyConfig.apply_overrides``, Hydra's syntax).

    Raises:
        MissingFileError: ``path`` does not exist.
        ConfigError: the file is not a ``.py``/``.yaml`` LazyConfig or fails to run (syntax
            error, failed import), an override is malformed or names no key of the config.
    """
    check_config_file(path, "Python config", "configs/lazy/vgg16_frcnn_shapes_demo.py")
    if not (path.endswith(".py") or path.endswith(".yaml")):
        raise ConfigError("{}: not a Python config (.py) or a saved LazyConfig (.yaml); YAML "
                          "configs of the plugin go to tools/train_net.py".format(path))
    try:
        cfg = LazyConfig.load(path)
    except (SyntaxError, ImportError, NameError, AttributeError, TypeError, ValueError) as e:
        syntax = e if isinstance(e, SyntaxError) and e.lineno else e.__cause__
        if isinstance(syntax, SyntaxError) and syntax.lineno:  # detectron2 wraps it
            raise ConfigError("Cannot load the Python config {}, line {}: SyntaxError: {}; "
                              "allowed: a Python file that runs".format(
                                  path, syntax.lineno, syntax.msg)) from e
        raise ConfigError("Cannot load the Python config {}: {}: {}".format(
            path, type(e).__name__, e)) from e
    for o in overrides or ():
        if "=" not in o:
            raise ConfigError(
                "Override {!r}: allowed: key=value, e.g. train.max_iter=100".format(o)
            )
        key = o.split("=", 1)[0].lstrip("+~")
        _check_override_key(cfg, key)
        before = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        try:
            LazyConfig.apply_overrides(cfg, [o])
        except Exception as e:  # Hydra's parser raises its own error types
            raise ConfigError("Override {!r} is invalid: {}: {}".format(
                o, type(e).__name__, e)) from e
        _check_override_type(o, key, before, OmegaConf.select(cfg, key, default=None))
    _check_ranges(cfg)
    return cfg


def _type_name(value):
    if isinstance(value, bool):
        return "a boolean (true or false)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return "a list"
    if isinstance(value, dict) or OmegaConf.is_dict(value):
        return "a mapping"
    return type(value).__name__


def _check_override_type(override, key, before, after):
    """An override keeps the type of the config's value (an integer stays an integer, a number
    a number: ``train.max_iter=abc`` is refused); a key without a value (None) or a new
    argument of a LazyCall takes anything."""
    if before is None or after is None:
        return
    ok = True
    if isinstance(before, bool):
        ok = isinstance(after, bool)
    elif isinstance(before, int):
        ok = isinstance(after, int) and not isinstance(after, bool)
    elif isinstance(before, float):
        ok = isinstance(after, (int, float)) and not isinstance(after, bool)
    elif isinstance(before, str):
        ok = isinstance(after, str) or not isinstance(after, (dict, list, tuple))
    if not ok:
        raise ConfigError("Override {!r}: {} is {} in the config (there: {!r}), not {} ({!r}); "
                          "allowed: {}".format(override, key, _type_name(before), before,
                                               _type_name(after), after, _type_name(before)))


# keys of detectron2's common/train.py (and the data loader) with the values they allow
_RANGES = (
    ("train.max_iter", 1, "an integer >= 1"),
    ("train.checkpointer.period", 1, "an integer >= 1"),
    ("train.log_period", 1, "an integer >= 1"),
    ("train.eval_period", 0, "an integer >= 0 (0: evaluate at the end only)"),
    ("dataloader.train.total_batch_size", 1, "an integer >= 1"),
)


def _check_ranges(cfg):
    """The counts of the schedule are integers in their range (``train.max_iter=-4`` would
    train nothing and evaluate)."""
    for key, low, allowed in _RANGES:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError("{}={!r} is invalid; allowed: {}".format(key, value, allowed))


class lazy_config_errors:
    """Context manager: a ``TypeError`` raised while a config is instantiated (an argument the
    target does not take, a missing one) becomes a :class:`ConfigError` naming ``what``; the
    plugin's components raise ConfigError themselves for bad values."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, TypeError) and (
            "argument" in str(exc)
        ):
            raise ConfigError("Cannot build {} from the config: {}".format(self.what, exc)) from exc
        return False


def checked_dataloader(dataloader):
    """The plugin's checked loaders in a dataloader config of detectron2's model zoo
    (``model_zoo.get_config("common/data/coco.py").dataloader``), in place, same keys:

    * ``train``: :func:`~frcnn_plugin.data.loaders.build_frcnn_train_loader` (unreadable images
      skipped, ``max_consecutive_bad_samples`` and ``seed`` added), its ``dataset``
      :func:`~frcnn_plugin.data.checks.checked_train_dataset_dicts` (``invalid_boxes`` added),
      its ``mapper`` :class:`~frcnn_plugin.data.FRCNNDatasetMapper` without instance masks;
    * ``test``: :func:`~frcnn_plugin.data.loaders.build_frcnn_test_loader` over
      :func:`~frcnn_plugin.data.loaders.test_dataset_dicts` (every file checked);
    * ``evaluator``: :func:`~frcnn_plugin.engine.evaluator_for_dataset` (by the data set's
      ``evaluator_type``: COCO or PASCAL VOC), writing under ``train.output_dir/inference``.

    Returns:
        the same config.
    """
    train = dataloader.train
    train._target_ = build_frcnn_train_loader
    train.dataset._target_ = checked_train_dataset_dicts
    train.dataset.invalid_boxes = "drop"
    train.mapper._target_ = FRCNNDatasetMapper
    train.mapper.use_instance_mask = False
    train.max_consecutive_bad_samples = 10
    train.seed = 0
    test = dataloader.test
    test._target_ = build_frcnn_test_loader
    test.dataset._target_ = test_dataset_dicts
    test.dataset_name = "${.dataset.names}"
    dataloader.evaluator._target_ = evaluator_for_dataset
    dataloader.evaluator.output_dir = "${...train.output_dir}/inference"
    return dataloader


def multistep_lr_multiplier(max_iter, steps, gamma=0.1, warmup_iters=1000,
                            warmup_factor=0.001, warmup_method="linear"):
    """A LazyCall of detectron2's ``WarmupParamScheduler`` over a ``MultiStepParamScheduler``
    equal to what ``build_lr_scheduler`` builds from ``SOLVER.MAX_ITER``, ``STEPS``, ``GAMMA``,
    ``WARMUP_ITERS``, ``WARMUP_FACTOR`` and ``WARMUP_METHOD`` (steps beyond ``max_iter``
    dropped, as there). Plain values in the config: it saves and reloads."""
    steps = [int(s) for s in steps if s <= max_iter]
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[gamma ** k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        ),
        warmup_length=min(warmup_iters / max_iter, 1.0),
        warmup_method=warmup_method,
        warmup_factor=warmup_factor,
    )
