"""What the command-line tools share: how they read a config and which weights they load, and
how they report a user's mistake.

* :func:`load_config`: the one way every tool under ``tools/`` reads its ``--config-file`` and
  overrides: a YAML config checked and frozen, or a Python config (detectron2's LazyConfig), on
  a device that exists here;
* :func:`weights_of`: ``--weights``, else the config's weights;
* :func:`int_in_range`, :func:`float_in_range`: ``argparse`` types that check a numeric flag's
  range at parse time, the allowed range in the message (argparse's exit status 2);
* :func:`run_cli`, :func:`add_debug_flag` and the :class:`UserError` family, defined in
  :mod:`frcnn_plugin.errors` and importable from here (``from frcnn_plugin.cli import
  ConfigError, run_cli``): a user error as one ``error: ...`` paragraph and exit status 2.
"""
import argparse
import logging
import math

import torch

from . import errors
from .config import load_frcnn_config
from .config_checks import validate_frcnn_config
from .errors import (  # noqa: F401  (re-exported: the tools import them from here)
    DEBUG_ENV,
    DEBUG_FLAG,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    BadImageError,
    CheckpointError,
    ConfigError,
    DataError,
    MissingFileError,
    OutputError,
    OutputExistsError,
    Terminated,
    UnknownDatasetError,
    UserError,
    add_debug_flag,
    command_line,
    debug_requested,
    format_interrupt,
    format_user_error,
    interrupt_note,
    run_cli,
)
from .lazy import is_lazy_config, load_lazy_config

__all__ = ["CONFIG_KINDS", "load_config", "weights_of", "int_in_range", "float_in_range"] + \
    errors.__all__

logger = logging.getLogger(__name__)

# what a tool reads: "yaml" (``KEY VALUE`` overrides), "python" (detectron2's LazyConfig, also
# one saved as .yaml; ``key=value`` overrides) or "any" (a *.py file is a Python config)
CONFIG_KINDS = ("yaml", "python", "any")


def _no_cuda(device) -> bool:
    return str(device).startswith("cuda") and not torch.cuda.is_available()


def load_config(config_file, opts=(), *, kind="yaml", device=None):
    """The config of a tool, with no side effects (nothing is written).

    A YAML config: :func:`~frcnn_plugin.config.load_frcnn_config` (``get_cfg`` +
    ``add_frcnn_config`` + the file + the ``KEY VALUE`` overrides ``opts``, then ``MODEL.DEVICE
    device`` if given), checked by :func:`~frcnn_plugin.config_checks.validate_frcnn_config`
    and frozen. A Python config: :func:`~frcnn_plugin.lazy.load_lazy_config` (the file + the
    ``key=value`` overrides ``opts``, then ``train.device=device`` if given); returned as it is
    (an omegaconf ``DictConfig``).

    A CUDA device that the config names where CUDA is not available becomes "cpu", with a
    warning; a ``device`` given here is kept (a tool checks its own flag).

    Args:
        kind (str): one of :data:`CONFIG_KINDS`: what the tool reads.

    Raises:
        UserError: a missing config file, a bad key or value, a Python config for a tool that
            reads YAML configs only (see :mod:`frcnn_plugin.errors`).
    """
    if kind not in CONFIG_KINDS:
        raise ValueError("kind {!r}; allowed: {}".format(kind, ", ".join(CONFIG_KINDS)))
    if kind == "python" or (kind == "any" and is_lazy_config(config_file)):
        cfg = load_lazy_config(config_file, list(opts) + (
            ["train.device=" + device] if device is not None else []))
        train = cfg.get("train", None)  # (a tool checks the keys it needs)
        if device is None and train is not None and _no_cuda(train.get("device", "cpu")):
            logger.warning("train.device=%s but no GPU: using cpu", train.device)
            train.device = "cpu"
        return cfg
    if is_lazy_config(config_file):
        raise ConfigError("{}: a Python config; this tool reads YAML configs only "
                          "(tools/lazy_train_net.py trains from Python configs; "
                          "tools/inspect_pipeline.py, tools/visualize_anchors.py and "
                          "tools/predict.py read both)".format(config_file))
    cfg = load_frcnn_config(config_file, list(opts) + (
        ["MODEL.DEVICE", device] if device is not None else []))
    if device is None and _no_cuda(cfg.MODEL.DEVICE):
        logger.warning("MODEL.DEVICE=%s but no GPU: using cpu", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    validate_frcnn_config(cfg)
    cfg.freeze()
    return cfg


def weights_of(cfg, weights, config_file):
    """The checkpoint a tool loads: ``weights`` (its ``--weights``; ``""`` asks for an untrained
    model), else the config's ``MODEL.WEIGHTS`` (a Python config seen by the inspection tools:
    ``train.init_checkpoint``).

    Raises:
        CheckpointError: neither is set.
    """
    if weights is not None:
        return weights
    if not cfg.MODEL.WEIGHTS:
        raise CheckpointError(
            "No weights: MODEL.WEIGHTS is empty in {} (a Python config: train.init_checkpoint); "
            "allowed: --weights FILE (a trained "
            "checkpoint, e.g. OUTPUT_DIR/model_final.pth), or --weights '' for an untrained "
            "model".format(config_file))
    return cfg.MODEL.WEIGHTS


def _range_text(kind, lo, hi, lo_open=False, hi_open=False):
    if lo is not None and hi is not None:
        return "{} in {}{}, {}{}".format(kind, "(" if lo_open else "[", lo, hi,
                                         ")" if hi_open else "]")
    if lo is not None:
        return "{} {} {}".format(kind, ">" if lo_open else ">=", lo)
    if hi is not None:
        return "{} {} {}".format(kind, "<" if hi_open else "<=", hi)
    return kind


def int_in_range(lo=None, hi=None, note=""):
    """An ``argparse`` type: an integer in [``lo``, ``hi``] (None: unbounded); anything else is
    argparse's error "argument --x: '-2': allowed: an integer >= 0<note>" (exit status 2)."""
    allowed = _range_text("an integer", lo, hi) + note

    def parse(text):
        try:
            value = int(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError("{!r}: allowed: {}".format(text, allowed)) from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError("{!r}: allowed: {}".format(text, allowed))
        return value

    parse.__name__ = "integer"  # argparse's "invalid integer value" if it ever names it
    return parse


def float_in_range(lo=None, hi=None, lo_open=False, hi_open=False, note=""):
    """An ``argparse`` type: a finite number in the range (``lo_open`` / ``hi_open``: the bound
    itself excluded); anything else is argparse's error naming the value and the range."""
    allowed = _range_text("a number", lo, hi, lo_open, hi_open) + note

    def parse(text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError("{!r}: allowed: {}".format(text, allowed)) from None
        bad = not math.isfinite(value)
        bad = bad or (lo is not None and (value <= lo if lo_open else value < lo))
        bad = bad or (hi is not None and (value >= hi if hi_open else value > hi))
        if bad:
            raise argparse.ArgumentTypeError("{!r}: allowed: {}".format(text, allowed))
        return value

    parse.__name__ = "number"
    return parse
