"""Config checks that run once, right after the config is merged (``tools/train_net.py``'s
``setup``), so that a bad value fails in seconds with a message naming the key, the value and what
is allowed, instead of as an ``AssertionError`` deep inside detectron2 (e.g. its ``Matcher``) or
hours into a run.

The plugin's components validate their own constructor arguments as well (the anchor generator,
the samplers, the RPN and ROI heads, the VGG backbone); this module covers the keys that
detectron2's own components read without checking, and the plugin's reliability keys.
"""
import contextlib
import math
import numbers
import os
import re
import tempfile

import detectron2.modeling as m
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY

from .config import config_keys
from .errors import ConfigError, OutputError, UserError
from .modeling.anchor_generator import uses_explicit_sizes
from .modeling.precision import PRECISIONS
from .modeling.backbone.vgg import VGG_INITS
from .modeling.roi_heads import PREDICTOR_INITS, FRCNNROIHeads
from .modeling.rpn import FRCNNRPN, PROPOSAL_ORDERS
from .modeling.sampling import FRCNN_SAMPLER_REGISTRY, rpn_sampler_names
from .modeling.soft_nms import SOFT_NMS_METHODS

__all__ = [
    "NONFINITE_LOSS_MODES",
    "INVALID_BOX_MODES",
    "validate_frcnn_config",
    "check_output_dir",
    "config_errors",
]

NONFINITE_LOSS_MODES = ("error", "skip")
INVALID_BOX_MODES = ("drop", "error")
# INPUT.FORMAT -> number of channels, for the formats detectron2's read_image produces.
_FORMAT_CHANNELS = {"BGR": 3, "RGB": 3, "YUV-BT.601": 3, "L": 1}


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


class _Problems:
    """Collects "KEY=value is invalid; allowed: ..." lines."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.lines = []

    def get(self, key):
        node = self.cfg
        for part in key.split("."):
            node = node[part]
        return node

    def require(self, key, ok, allowed):
        value = self.get(key)
        try:
            good = ok(value)
        except (TypeError, ValueError):
            good = False
        if not good:
            self.lines.append("{}={!r} is invalid; allowed: {}".format(key, value, allowed))
        return good


def _check_matcher(p, prefix):
    """IOU_THRESHOLDS / IOU_LABELS as detectron2's Matcher needs them."""
    th_key, lab_key = prefix + ".IOU_THRESHOLDS", prefix + ".IOU_LABELS"
    ok = p.require(
        th_key,
        lambda v: len(v) > 0
        and all(_is_number(t) and 0.0 < t <= 1.0 for t in v)
        and all(a <= b for a, b in zip(v[:-1], v[1:])),
        "a non-empty list of IoUs in (0, 1], in increasing order (e.g. [0.3, 0.7])",
    )
    labels_ok = p.require(
        lab_key, lambda v: all(lab in (-1, 0, 1) for lab in v), "labels -1, 0 or 1"
    )
    if ok and labels_ok and len(p.get(lab_key)) != len(p.get(th_key)) + 1:
        p.lines.append(
            "{}={!r} has {} labels; allowed: one more label than {}={!r} (one per IoU "
            "interval)".format(
                lab_key, p.get(lab_key), len(p.get(lab_key)), th_key, p.get(th_key)
            )
        )


def _check_sampling(p, prefix):
    p.require(
        prefix + ".BATCH_SIZE_PER_IMAGE", lambda v: _is_int(v) and v > 0, "an integer > 0"
    )
    p.require(
        prefix + ".POSITIVE_FRACTION",
        lambda v: _is_number(v) and 0.0 < v <= 1.0,
        "a number in (0, 1]",
    )


def _check_rpn_sampler(p):
    """A sampler that needs the per-example losses (OHEMSampler) works in the ROI heads only;
    FRCNNRPN refuses it when built, this says so up front with the other config errors."""
    name = p.get("MODEL.RPN.SAMPLER.NAME")
    if not _is_frcnn_rpn(p.get("MODEL.PROPOSAL_GENERATOR.NAME")):
        return  # detectron2's RPN does not read MODEL.RPN.SAMPLER
    if name in FRCNN_SAMPLER_REGISTRY and getattr(
            FRCNN_SAMPLER_REGISTRY.get(name), "needs_losses", False):
        p.lines.append(
            "MODEL.RPN.SAMPLER.NAME={!r} is invalid: it needs the per-example losses, which only "
            "the ROI heads compute; allowed: {}".format(name, rpn_sampler_names())
        )


def _registered_subclass(registry, name, base) -> bool:
    """Whether ``name`` is registered in ``registry`` as ``base`` or a subclass of it."""
    try:
        cls = registry.get(name)
    except KeyError:
        return False  # an unknown name is detectron2's own error when the model is built
    return isinstance(cls, type) and issubclass(cls, base)


def _is_frcnn_rpn(name) -> bool:
    """Whether the registered proposal generator ``name`` is FRCNNRPN or a subclass of it."""
    return _registered_subclass(PROPOSAL_GENERATOR_REGISTRY, name, FRCNNRPN)


def _check_model(p):
    _check_sampling(p, "MODEL.RPN")
    _check_sampling(p, "MODEL.ROI_HEADS")
    _check_rpn_sampler(p)
    _check_matcher(p, "MODEL.RPN")
    _check_matcher(p, "MODEL.ROI_HEADS")
    p.require("MODEL.RPN.NMS_THRESH", lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]")
    p.require(
        "MODEL.RPN.BEST_ANCHOR_MIN_IOU", lambda v: _is_number(v) and -1 <= v < 1,
        "a number in [-1, 1) (0.0: a GT's best anchor is positive only when it overlaps the GT; "
        "< 0: always, as py-faster-rcnn)",
    )
    p.require(
        "MODEL.RPN.PROPOSAL_ORDER", lambda v: v in PROPOSAL_ORDERS,
        " or ".join(repr(o) for o in PROPOSAL_ORDERS),
    )
    p.require(
        "MODEL.ROI_HEADS.NMS_THRESH_TEST", lambda v: _is_number(v) and 0 < v <= 1,
        "a number in (0, 1]",
    )
    p.require(
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", lambda v: _is_number(v) and 0 <= v <= 1,
        "a number in [0, 1]",
    )
    p.require("MODEL.ROI_HEADS.NUM_CLASSES", lambda v: _is_int(v) and v >= 1, "an integer >= 1")
    p.require(
        "MODEL.ROI_HEADS.OHEM_NMS_THRESH", lambda v: _is_number(v) and 0 < v <= 1,
        "a number in (0, 1] (1: no NMS among the OHEM candidates)",
    )
    p.require(
        "MODEL.ROI_HEADS.SOFT_NMS.METHOD", lambda v: v in SOFT_NMS_METHODS,
        ", ".join(repr(m) for m in SOFT_NMS_METHODS),
    )
    p.require("MODEL.ROI_HEADS.SOFT_NMS.SIGMA", lambda v: _is_number(v) and v > 0, "a number > 0")
    p.require(
        "MODEL.ROI_HEADS.SOFT_NMS.SCORE_THRESH", lambda v: _is_number(v) and 0 <= v < 1,
        "a number in [0, 1)",
    )
    p.require(
        "MODEL.VGG.INIT", lambda v: v in VGG_INITS, ", ".join(repr(v) for v in VGG_INITS)
    )
    init_ok = p.require(
        "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", lambda v: v in PREDICTOR_INITS,
        ", ".join(repr(v) for v in PREDICTOR_INITS),
    )
    if init_ok and p.get("MODEL.ROI_BOX_HEAD.PREDICTOR_INIT") != "paper" and not _is_frcnn_heads(
            p.get("MODEL.ROI_HEADS.NAME")):
        p.lines.append(
            "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT={!r} with MODEL.ROI_HEADS.NAME={!r}; allowed: "
            "'paper' (the predictor's own initialization), or the FRCNNROIHeads ROI heads (or a "
            "subclass), which apply it".format(
                p.get("MODEL.ROI_BOX_HEAD.PREDICTOR_INIT"), p.get("MODEL.ROI_HEADS.NAME")))
    _check_speed(p)
    _check_precision(p)

    def positive_lists(v):
        levels = list(v) if len(v) and isinstance(v[0], (list, tuple)) else [v]
        return len(levels) > 0 and all(
            len(level) > 0 and all(_is_number(x) and x > 0 for x in level) for level in levels
        )

    ag = p.get("MODEL.ANCHOR_GENERATOR")
    if ag.NAME != "FRCNNAnchorGenerator" or uses_explicit_sizes(
        ag.get("SCALES", []), ag.get("OCTAVE_BASE_SCALE", 0.0)
    ):  # FRCNNAnchorGenerator reads SIZES only without SCALES and octave scales
        p.require(
            "MODEL.ANCHOR_GENERATOR.SIZES", positive_lists,
            "a non-empty list of positive sizes per feature map (e.g. [[128, 256, 512]])",
        )
    p.require(
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", positive_lists,
        "a non-empty list of positive ratios per feature map (e.g. [[0.5, 1.0, 2.0]])",
    )
    p.require(
        "MODEL.ANCHOR_GENERATOR.OFFSET", lambda v: _is_number(v) and 0 <= v < 1,
        "a number in [0, 1)",
    )
    mean_ok = p.require(
        "MODEL.PIXEL_MEAN", lambda v: len(v) > 0 and all(_is_number(x) for x in v),
        "a list of numbers, one per input channel",
    )
    std_ok = p.require(
        "MODEL.PIXEL_STD", lambda v: len(v) == len(p.get("MODEL.PIXEL_MEAN"))
        and all(_is_number(x) and x > 0 for x in v),
        "positive numbers, as many as MODEL.PIXEL_MEAN",
    )
    channels = _FORMAT_CHANNELS.get(p.get("INPUT.FORMAT"))
    if mean_ok and std_ok and channels and channels != len(p.get("MODEL.PIXEL_MEAN")):
        p.lines.append(
            "INPUT.FORMAT={!r} gives {} channel(s) but MODEL.PIXEL_MEAN has {} values; "
            "allowed: one mean and std per channel".format(
                p.get("INPUT.FORMAT"), channels, len(p.get("MODEL.PIXEL_MEAN"))
            )
        )


def _is_frcnn_heads(name) -> bool:
    """Whether the registered ROI heads ``name`` are FRCNNROIHeads or a subclass of them."""
    return _registered_subclass(ROI_HEADS_REGISTRY, name, FRCNNROIHeads)


def _check_speed(p):
    """The inference-speed keys (issue 13): SVD ranks, channels-last, int8."""
    ranks_ok = p.require(
        "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS",
        lambda v: len(v) == 2 and all(_is_int(r) and r >= 0 for r in v),
        "[rank of fc6, rank of fc7], integers >= 0 (0: off), e.g. [1024, 256]",
    )
    if ranks_ok and any(p.get("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS")) and p.get(
            "MODEL.ROI_BOX_HEAD.NAME") != "VGGFCHead":
        p.lines.append(
            "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS={!r} with MODEL.ROI_BOX_HEAD.NAME={!r}; allowed: "
            "[0, 0], or the VGGFCHead box head (the only one that reads it)".format(
                p.get("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS"), p.get("MODEL.ROI_BOX_HEAD.NAME")))
    for key in ("MODEL.ROI_BOX_HEAD.FC_INT8", "MODEL.ROI_BOX_HEAD.FC_INT8_PREDICTOR",
                "MODEL.BF16_AUTOCAST"):
        p.require(key, lambda v: isinstance(v, bool), "True or False")
    if p.get("MODEL.ROI_BOX_HEAD.FC_INT8") is True and not str(
            p.get("MODEL.DEVICE")).startswith("cpu"):
        p.lines.append("MODEL.ROI_BOX_HEAD.FC_INT8=True with MODEL.DEVICE={!r}; allowed: "
                       "MODEL.DEVICE cpu (int8 dynamic quantization runs on the CPU)".format(
                           p.get("MODEL.DEVICE")))
    cl_ok = p.require("MODEL.CHANNELS_LAST", lambda v: isinstance(v, bool), "True or False")
    if cl_ok and p.get("MODEL.CHANNELS_LAST") and p.get(
            "MODEL.META_ARCHITECTURE") != "FRCNNGeneralizedRCNN":
        p.lines.append(
            "MODEL.CHANNELS_LAST=True with MODEL.META_ARCHITECTURE={!r}; allowed: False, or "
            "the FRCNNGeneralizedRCNN meta-architecture (which applies it)".format(
                p.get("MODEL.META_ARCHITECTURE")))


def _check_precision(p):
    """Mixed precision (issue 26): SOLVER.AMP and TEST.AMP."""
    for section in ("SOLVER", "TEST"):
        key = section + ".AMP.PRECISION"
        p.require(section + ".AMP.ENABLED", lambda v: isinstance(v, bool), "True or False")
        if p.require(key, lambda v: v in PRECISIONS, ", ".join(repr(v) for v in PRECISIONS)):
            if p.get(key) == "fp16" and p.get(section + ".AMP.ENABLED") is True and str(
                    p.get("MODEL.DEVICE")).startswith("cpu"):
                p.lines.append(
                    "{}='fp16' with MODEL.DEVICE={!r}; allowed on the CPU: 'bf16' or 'auto' "
                    "(PyTorch has no fast float16 CPU kernels)".format(key, p.get("MODEL.DEVICE")))


def _check_input_and_solver(p):
    p.require(
        "INPUT.MIN_SIZE_TRAIN", lambda v: len(v) > 0 and all(_is_int(x) and x > 0 for x in v),
        "a non-empty list of integers > 0",
    )
    p.require("INPUT.MAX_SIZE_TRAIN", lambda v: _is_int(v) and v > 0, "an integer > 0")
    p.require("INPUT.MIN_SIZE_TEST", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: keep)")
    p.require("INPUT.MAX_SIZE_TEST", lambda v: _is_int(v) and v > 0, "an integer > 0")
    p.require("SOLVER.IMS_PER_BATCH", lambda v: _is_int(v) and v > 0, "an integer > 0")
    p.require("SOLVER.BASE_LR", lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
    p.require("SOLVER.MAX_ITER", lambda v: _is_int(v) and v > 0, "an integer > 0")
    p.require("SOLVER.CHECKPOINT_PERIOD", lambda v: _is_int(v) and v > 0, "an integer > 0")
    p.require(
        "SOLVER.STEPS",
        lambda v: all(_is_int(s) and s > 0 for s in v) and all(a < b for a, b in zip(v, v[1:])),
        "increasing integers > 0",
    )
    p.require("SOLVER.MOMENTUM", lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
    p.require(
        "SOLVER.WARMUP_FACTOR", lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"
    )
    p.require("SOLVER.WARMUP_ITERS", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    p.require("TEST.EVAL_PERIOD", lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: off)")
    p.require("DATALOADER.NUM_WORKERS", lambda v: _is_int(v) and v >= 0, "an integer >= 0")


def _check_reliability(p):
    p.require("SOLVER.NONFINITE_LOSS", lambda v: v in NONFINITE_LOSS_MODES,
              " or ".join(repr(m) for m in NONFINITE_LOSS_MODES))
    p.require("SOLVER.NONFINITE_LOSS_MAX_SKIPS", lambda v: _is_int(v) and v >= 1,
              "an integer >= 1")
    p.require("SOLVER.SYNC_CHECK_PERIOD", lambda v: _is_int(v) and v >= 0,
              "an integer >= 0 (0: off)")
    p.require("DATALOADER.INVALID_BOXES", lambda v: v in INVALID_BOX_MODES,
              " or ".join(repr(m) for m in INVALID_BOX_MODES))
    p.require("DATALOADER.MAX_CONSECUTIVE_BAD_SAMPLES", lambda v: _is_int(v) and v >= 1,
              "an integer >= 1")


def validate_frcnn_config(cfg):
    """Check a merged config (after :func:`frcnn_plugin.add_frcnn_config`).

    Raises:
        ConfigError: (a ``ValueError``) listing every invalid value, one line each, as
            ``KEY=value is invalid; allowed: ...``.
    """
    p = _Problems(cfg)
    _check_model(p)
    _check_input_and_solver(p)
    _check_reliability(p)
    if p.lines:
        raise ConfigError(
            "Invalid config ({} problem{}):\n  - {}".format(
                len(p.lines), "s" if len(p.lines) > 1 else "", "\n  - ".join(p.lines)
            )
        )
    return cfg


def check_output_dir(path, key="OUTPUT_DIR"):
    """Create ``path`` if needed and check that a file can be written there.

    Raises:
        OutputError: (an ``OSError``) naming the key, the folder and the reason (permissions, a
            file in the way, ...).
        ConfigError: ``path`` is empty.
    """
    if not path:
        raise ConfigError("{} is empty; allowed: a folder for checkpoints and logs".format(key))
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OutputError(
            e.errno,
            "{}={!r} cannot be written ({}); choose another {} or fix its permissions".format(
                key, path, e.strerror or e, key
            ),
        ) from e
    return path


# detectron2's registries -> the config key that names their entry
_REGISTRY_KEYS = {
    "META_ARCH": "MODEL.META_ARCHITECTURE",
    "BACKBONE": "MODEL.BACKBONE.NAME",
    "PROPOSAL_GENERATOR": "MODEL.PROPOSAL_GENERATOR.NAME",
    "RPN_HEAD": "MODEL.RPN.HEAD_NAME",
    "ANCHOR_GENERATOR": "MODEL.ANCHOR_GENERATOR.NAME",
    "ROI_HEADS": "MODEL.ROI_HEADS.NAME",
    "ROI_BOX_HEAD": "MODEL.ROI_BOX_HEAD.NAME",
}
_NOT_REGISTERED = re.compile(r"No object named '(.*)' found in '(\w+)' registry")
_NAMED_KEY = re.compile(r"\b([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)+)=")


def _registry_error(message):
    """"KEY='name' is not registered; allowed: ..." for fvcore's registry ``KeyError``."""
    found = _NOT_REGISTERED.search(message)
    if not found or found.group(2) not in _REGISTRY_KEYS:
        return None
    registry = getattr(m, found.group(2) + "_REGISTRY")
    return "{}={!r} is not registered in detectron2's {}_REGISTRY; allowed: {}".format(
        _REGISTRY_KEYS[found.group(2)], found.group(1), found.group(2),
        ", ".join(sorted(name for name, _ in registry)),
    )


@contextlib.contextmanager
def config_errors(cfg):
    """Turn the config errors that components raise while they are built from ``cfg`` into
    :class:`ConfigError`: a ``ValueError`` whose message names a key of ``cfg`` as ``KEY=value``
    (the plugin's components and detectron2 name the bad key so), and detectron2's registry
    ``KeyError`` for a name (``MODEL.BACKBONE.NAME`` ...) that is not registered. Any other error
    passes unchanged (with its traceback): it is a bug, not a bad config.

    Example::

        with config_errors(cfg):
            model = build_model(cfg)
    """
    try:
        yield
    except UserError:
        raise
    except KeyError as e:
        message = _registry_error(str(e.args[0]) if e.args else "")
        if message is None:
            raise
        raise ConfigError(message) from e
    except ValueError as e:
        keys = set(config_keys(cfg))
        if not any(k in keys for k in _NAMED_KEY.findall(str(e))):
            raise
        raise ConfigError(str(e)) from e
