"""frcnn_plugin's config keys: :func:`add_frcnn_config`.

Each key is added with a default and a comment. The defaults reproduce the paper where a key is
the plugin's own; detectron2's own keys keep detectron2's defaults here, and the YAML files under
``configs/`` set the paper's values (see docs/configuration.md).
"""

import copy
import difflib
import os
import re

import yaml

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .data.own import register_config_datasets
from .errors import ConfigError, MissingFileError

__all__ = ["add_frcnn_config", "check_config_file", "check_yaml_config", "config_keys",
           "explain_merge_error", "load_frcnn_config", "suggest_keys"]


def config_keys(node, prefix=""):
    """Every key of a CfgNode, dotted (``MODEL.RPN.NMS_THRESH``), depth first."""
    for k, v in node.items():
        if isinstance(v, CN):
            yield from config_keys(v, prefix + k + ".")
        else:
            yield prefix + k


def suggest_keys(key, keys, n=3):
    """Valid keys close to ``key``: close as a whole (difflib, cutoff 0.75) and, unless the last
    part is the same (a key under the wrong node), close in the last part too, so that a long
    shared prefix alone (``MODEL.VGG.``) does not make every sibling a suggestion."""
    leaf = key.rsplit(".", 1)[-1]
    close = []
    for cand in difflib.get_close_matches(key, keys, n=2 * n, cutoff=0.75):
        cand_leaf = cand.rsplit(".", 1)[-1]
        if cand_leaf == leaf or difflib.SequenceMatcher(None, leaf, cand_leaf).ratio() >= 0.6:
            close.append(cand)
    return close[:n]


def _yaml_error(path, error):
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = ", line {}, column {}".format(mark.line + 1, mark.column + 1) if mark else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return ConfigError("{}{}: not valid YAML ({}); allowed: a YAML mapping of config keys, e.g. "
                       "\"SOLVER:\\n  MAX_ITER: 100\"".format(path, where, problem))


def _key_lines(node, path, prefix, out):
    """dotted key -> "path, line N" for every key of a composed YAML mapping node."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        name = prefix + str(key.value)
        out[name] = "{}, line {}".format(path, key.start_mark.line + 1)
        _key_lines(value, path, name + ".", out)


def check_yaml_config(path, _seen=()):
    """Check a YAML config file and its ``_BASE_`` chain before detectron2 merges it: each file
    parses, is a mapping of keys, and each ``_BASE_`` (relative to the file that names it, as
    detectron2 resolves it) exists.

    Returns:
        dict: dotted key -> "file, line N" where it is set (the last file of the chain wins), for
        error messages.

    Raises:
        ConfigError: a syntax error (file, line, column and the problem), an empty file, a file
            that is not a mapping, a ``_BASE_`` that is not a path, a ``_BASE_`` cycle.
        MissingFileError: a ``_BASE_`` that does not exist (naming the file and line that
            name it, and where it was looked for).
    """
    if "://" in str(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ConfigError("{}: not a text file ({}); allowed: a YAML config file".format(
            path, e.reason)) from None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        raise _yaml_error(path, e) from None
    if node is None:
        raise ConfigError("{} is empty; allowed: a YAML mapping of config keys, e.g. \"_BASE_: "
                          "Base-VGG16-FRCNN.yaml\" and the keys it changes".format(path))
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError("{}, line {}: a YAML {}, not a mapping of config keys; allowed: "
                          "KEY: value lines, e.g. \"SOLVER:\\n  MAX_ITER: 100\"".format(
                              path, node.start_mark.line + 1,
                              "list" if isinstance(node, yaml.SequenceNode) else "scalar"))
    lines = {}
    for key, value in node.value:
        if key.value != "_BASE_":
            continue
        bases = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for base_node in bases:
            where = "{}, line {}".format(path, base_node.start_mark.line + 1)
            if not isinstance(base_node, yaml.ScalarNode) or not base_node.value:
                raise ConfigError("{}: _BASE_ is not a file path; allowed: a path relative to "
                                  "the config's folder, or absolute".format(where))
            base = os.path.expanduser(base_node.value)
            if "://" in base:
                continue
            resolved = base if os.path.isabs(base) else os.path.join(
                os.path.dirname(path), base)
            if not os.path.isfile(resolved):
                raise MissingFileError(
                    "{}: _BASE_ {} not found (looked for {}); allowed: a path relative to the "
                    "folder of {}, or absolute (a config copied elsewhere needs its base "
                    "beside it, or an absolute _BASE_)".format(
                        where, base_node.value, resolved, os.path.basename(path)))
            real = os.path.realpath(resolved)
            if real in _seen:
                raise ConfigError("{}: _BASE_ {} includes itself (a cycle)".format(
                    where, base_node.value))
            lines.update(check_yaml_config(resolved, _seen + (os.path.realpath(path),)))
    _key_lines(node, path, "", lines)
    return lines


def explain_merge_error(cfg, error, source, key_lines=None):
    """A one-paragraph message for a failed ``merge_from_file``/``merge_from_list``: the bad key
    or value, where it came from (with ``key_lines``, of :func:`check_yaml_config`: the file and
    line), and the closest valid keys."""
    msg = str(error.args[0]) if error.args else str(error)
    m = re.search(r"(?:Non-existent (?:config )?key|config key): (\S+)", msg)
    where = key_lines.get(m.group(1)) if m and key_lines else None
    text = "Invalid config from {}: {}".format(source, msg)
    m = re.search(r"Type mismatch \(<class '(\w+)'> vs\. <class '\w+'>\) with values \((.*) vs\.",
                  msg)
    if m:
        kinds = {"int": "an integer", "float": "a number", "str": "a string", "bool": "True or "
                 "False", "tuple": "a list, e.g. (1, 2)", "list": "a list, e.g. [1, 2]"}
        text += "; allowed: {} (as the default, {})".format(kinds.get(m.group(1), m.group(1)),
                                                            m.group(2))
    m = re.search(r"Non-existent (?:config )?key: (\S+)", msg)
    if m:
        close = suggest_keys(m.group(1), list(config_keys(cfg)))
        text += (
            ". Did you mean: {}?".format(", ".join(close))
            if close
            else (
                ". Is frcnn_plugin.add_frcnn_config applied, and is the key spelled as in the "
                "configuration reference (docs/configuration.md)?"
            )
        )
    return text + (" (at {})".format(where) if where else "")


def check_config_file(path, what, example):
    """``path`` is given and, unless a URL, an existing file; ``what`` ("YAML file", "Python
    config") and ``example`` name what is allowed in the error.

    Raises:
        ConfigError: no path given.
        MissingFileError: a local path that does not exist.
    """
    if not path:
        raise ConfigError("No config file given (--config-file); allowed: a {}, e.g. {}".format(
            what, example))
    if "://" not in path and os.path.isdir(path):
        raise MissingFileError("Config file {} is a folder, not a file; allowed: a {}, e.g. "
                               "{}".format(path, what, example))
    if "://" not in path and not os.path.isfile(path):
        raise MissingFileError("Config file not found: {}; allowed: an existing {}, e.g. "
                               "{}".format(path, what, example))


def load_frcnn_config(config_file, opts=()):
    """``get_cfg()`` + :func:`add_frcnn_config` + ``config_file`` + ``KEY VALUE`` ``opts``
    (unfrozen), then the data sets of ``DATASETS.REGISTER`` registered
    (:func:`frcnn_plugin.data.own.register_config_datasets`).

    Raises:
        MissingFileError: ``config_file`` (a local path) does not exist.
        ConfigError: a bad key or value (a ``ValueError``), with :func:`explain_merge_error`'s
            message: where it came from and the closest valid keys; a bad ``DATASETS.REGISTER``
            entry.
    """
    check_config_file(config_file, "YAML file", "configs/vgg16_frcnn.yaml")
    key_lines = check_yaml_config(config_file)
    cfg = add_frcnn_config(get_cfg())
    for source, merge, what, lines in (
        (config_file, cfg.merge_from_file, config_file, key_lines),
        ("the command line", cfg.merge_from_list, list(opts or []), None),
    ):
        try:
            merge(what)
        except (KeyError, AssertionError, ValueError, TypeError) as e:
            raise ConfigError(explain_merge_error(cfg, e, source, lines)) from None
    register_config_datasets(cfg)
    return cfg


def with_keys(cfg, overrides):
    """A frozen copy of ``cfg`` with ``{"A.B.C": value}`` set through yacs' ``merge_from_list``
    (so the value types are checked as for command-line overrides)."""
    out = cfg.clone()
    out.defrost()
    out.merge_from_list([x for kv in overrides.items() for x in kv])
    out.freeze()
    return out


def _nodes_only(node):
    """A CfgNode with ``node``'s sub-nodes (recursively) and none of its values."""
    return CN({k: _nodes_only(v) for k, v in node.items() if isinstance(v, CN)})


def _add_missing(dst, src):
    """Copy the keys of ``src`` that ``dst`` lacks into ``dst`` (recursively); keep the rest."""
    for k, v in src.items():
        if k not in dst:
            dst[k] = copy.deepcopy(v)
        elif isinstance(v, CN) and isinstance(dst[k], CN):
            _add_missing(dst[k], v)


def add_frcnn_config(cfg):
    """Add frcnn_plugin's keys, with their defaults, to ``cfg`` (in place) and return it.

    Idempotent: a key ``cfg`` already has keeps its value, so a second call does not undo what
    was merged after the first one.
    """
    # The keys are written to an empty copy of cfg's node tree, then the missing ones copied.
    _C = _nodes_only(cfg)

    # ---------------------------------------------------------------------------------------
    # VGG backbone (MODEL.BACKBONE.NAME: "build_vgg_backbone").
    # MODEL.BACKBONE.FREEZE_AT counts frozen conv blocks: 2 freezes conv1 and conv2 (the paper).
    # ---------------------------------------------------------------------------------------
    _C.MODEL.VGG = CN()
    # VGG depth: 11, 13, 16 (the paper) or 19.
    _C.MODEL.VGG.DEPTH = 16
    # Norm after each conv: "" (original VGG), "BN" (torchvision's vgg16_bn), "FrozenBN",
    # "SyncBN", "GN".
    _C.MODEL.VGG.NORM = ""
    # Output features, a subset of conv1 ... conv5 (strides 1, 2, 4, 8, 16). conv5 is conv5_3
    # after ReLU, without the 5th max-pool: 512 channels at stride 16.
    _C.MODEL.VGG.OUT_FEATURES = ["conv5"]
    # Initialization of the convolutions (before any MODEL.WEIGHTS are loaded): "pytorch"
    # (nn.Conv2d's default, Kaiming-uniform with a = sqrt(5)) or "torchvision" (torchvision's
    # VGG: Kaiming-normal, fan-out, ReLU gain, zero bias; norms weight 1, bias 0).
    _C.MODEL.VGG.INIT = "pytorch"

    # Run the backbone and the RPN head in the channels_last (NHWC) memory format, in training
    # and inference (needs MODEL.META_ARCHITECTURE "FRCNNGeneralizedRCNN"). Same outputs within
    # float tolerance; measured faster for VGG16's convolutions on CPU (see BENCHMARKS.md).
    _C.MODEL.CHANNELS_LAST = False
    # Deprecated (removed in the next release): True means TEST.AMP.ENABLED True with
    # TEST.AMP.PRECISION "bf16" (a warning says so).
    _C.MODEL.BF16_AUTOCAST = False

    # ---------------------------------------------------------------------------------------
    # Mixed precision (docs/precision.md, frcnn_plugin.modeling.precision). Training:
    # detectron2's SOLVER.AMP.ENABLED, with the precision below; inference (evaluation,
    # tools/predict.py, the benchmark): TEST.AMP. The backbone, the RPN head, the box head and
    # the predictor compute in the low precision; anchors, losses, box decoding, RoI pooling
    # and NMS in float32; weights and optimizer state float32. "bf16" (CPU or GPU), "fp16"
    # (CUDA only: detectron2's AMPTrainer with GradScaler) or "auto": bf16 on a CPU with
    # amx_bf16 / avx512_bf16, float32 on other CPUs (bf16 would be emulated, slower), bf16 on a
    # GPU that supports it, else fp16; resolved and logged at start-up.
    # ---------------------------------------------------------------------------------------
    _C.SOLVER.AMP = CN()
    # detectron2's key: train in mixed precision.
    _C.SOLVER.AMP.ENABLED = False
    # The training precision: "bf16", "fp16" (CUDA only) or "auto".
    _C.SOLVER.AMP.PRECISION = "auto"
    _C.TEST.AMP = CN()
    # Evaluate and predict in mixed precision.
    _C.TEST.AMP.ENABLED = False
    # The inference precision: "bf16", "fp16" (CUDA only) or "auto".
    _C.TEST.AMP.PRECISION = "auto"

    # ---------------------------------------------------------------------------------------
    # VGG fc6/fc7 box head (MODEL.ROI_BOX_HEAD.NAME: "VGGFCHead"); it reads
    # MODEL.ROI_BOX_HEAD.FC_DIM (the paper: 4096).
    # ---------------------------------------------------------------------------------------
    # Dropout probability after fc6 and after fc7 (VGG and the paper: 0.5; 0 disables it).
    _C.MODEL.ROI_BOX_HEAD.DROPOUT = 0.5
    # Truncated SVD of fc6 and fc7 (Fast R-CNN section 3.1): [rank of fc6, rank of fc7]; 0 keeps
    # that layer whole. Each layer becomes two (in -> rank, rank -> out); the factors are
    # computed from the full weights when a checkpoint is loaded (error logged per layer), or
    # taken from a checkpoint written by tools/compress_fc.py. The paper: [1024, 256].
    _C.MODEL.ROI_BOX_HEAD.FC_SVD_RANKS = [0, 0]
    # CPU inference only: int8 dynamic quantization of fc6/fc7 (weights int8, activations
    # quantized per batch), applied after the checkpoint is loaded (tools/predict.py,
    # tools/train_net.py --eval-only, the benchmark). See frcnn_plugin.modeling.quantize.
    _C.MODEL.ROI_BOX_HEAD.FC_INT8 = False
    # With FC_INT8: quantize the box predictor (cls_score, bbox_pred) too.
    _C.MODEL.ROI_BOX_HEAD.FC_INT8_PREDICTOR = False
    # Initial weights of the box predictor (FRCNNROIHeads): "paper" (normal, std 0.01 for the
    # class scores, 0.001 for the box deltas: Fast R-CNN and detectron2) or "pytorch"
    # (nn.Linear's default, as torchvision's FastRCNNPredictor).
    _C.MODEL.ROI_BOX_HEAD.PREDICTOR_INIT = "paper"

    # ---------------------------------------------------------------------------------------
    # Anchors as base size x scales x ratios (MODEL.ANCHOR_GENERATOR.NAME:
    # "FRCNNAnchorGenerator"). Per level: sizes = BASE_SIZES x SCALES, or
    # BASE_SIZES x OCTAVE_BASE_SCALE x 2^(i / SCALES_PER_OCTAVE); with SCALES empty and
    # OCTAVE_BASE_SCALE 0 the sizes come from detectron2's SIZES. ASPECT_RATIOS and OFFSET are
    # detectron2's keys. A list of one level is used for every level.
    # ---------------------------------------------------------------------------------------
    # Base size per level, e.g. [16] (the paper) or [4, 8, 16, 32, 64]; [] = each level's stride.
    _C.MODEL.ANCHOR_GENERATOR.BASE_SIZES = []
    # Scales per level (list of lists), e.g. [[8, 16, 32]] (the paper); [] = not used.
    _C.MODEL.ANCHOR_GENERATOR.SCALES = []
    # Octave base scale (RetinaNet: 4.0, write it as a float); 0.0 = off. Exclusive with SCALES.
    _C.MODEL.ANCHOR_GENERATOR.OCTAVE_BASE_SCALE = 0.0
    # Number of octave scales 2^(i / n), i = 0 ... n - 1 (RetinaNet: 3); used if octave is on.
    _C.MODEL.ANCHOR_GENERATOR.SCALES_PER_OCTAVE = 3
    # Feature sizes whose grid anchors are kept for reuse (per level); 0 disables the cache.
    _C.MODEL.ANCHOR_GENERATOR.CACHE_SIZE = 32

    # ---------------------------------------------------------------------------------------
    # RPN and ROI heads (issue 4): MODEL.PROPOSAL_GENERATOR.NAME "FRCNNRPN",
    # MODEL.RPN.HEAD_NAME "SoftmaxRPNHead", MODEL.ROI_HEADS.NAME "FRCNNROIHeads",
    # MODEL.META_ARCHITECTURE "FRCNNGeneralizedRCNN". Sample sizes and fractions stay detectron2's
    # MODEL.RPN / MODEL.ROI_HEADS .BATCH_SIZE_PER_IMAGE and .POSITIVE_FRACTION.
    # ---------------------------------------------------------------------------------------
    _C.MODEL.RPN.SAMPLER = CN()
    # Anchor sampler, a name in FRCNN_SAMPLER_REGISTRY (the paper: 256 per image, <= 1/2 positive).
    _C.MODEL.RPN.SAMPLER.NAME = "BalancedRandomSampler"
    # Seed of the sampler's own generator; < 0 = torch's global RNG (as detectron2).
    _C.MODEL.RPN.SAMPLER.SEED = -1
    # RPN loss normalization: "detectron2" (both terms / (BATCH_SIZE_PER_IMAGE * images)),
    # "paper" (class / sampled anchors, box * LOSS_LAMBDA / anchor locations), "positives"
    # (class / sampled anchors, box * LOSS_LAMBDA / positives, as the walk-through).
    _C.MODEL.RPN.LOSS_NORMALIZATION = "paper"
    # Weight lambda of the RPN box term in the "paper" and "positives" normalizations (paper: 10).
    _C.MODEL.RPN.LOSS_LAMBDA = 10.0
    # MODEL.PROPOSAL_GENERATOR.MIN_SIZE in original-image pixels (True, the paper; needs
    # FRCNNGeneralizedRCNN) or in resized-input pixels (False, detectron2).
    _C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS = True
    # A GT's best anchors (ties included) become positive only if their IoU with it is greater
    # than this: 0.0 = only when they overlap it (the PyTorch reimplementations' epsilon);
    # < 0 = always, also at IoU 0 (py-faster-rcnn's and detectron2's literal tie rule).
    _C.MODEL.RPN.BEST_ANCHOR_MIN_IOU = 0.0
    # Order of the proposal layer: "paper" (clip, drop sides < MIN_SIZE, top-k, NMS, top-k) or
    # "detectron2" (find_top_rpn_proposals: top-k, clip, drop sides <= MIN_SIZE, NMS, top-k).
    _C.MODEL.RPN.PROPOSAL_ORDER = "paper"
    _C.MODEL.ROI_HEADS.SAMPLER = CN()
    # RoI sampler, a name in FRCNN_SAMPLER_REGISTRY (the paper: 128 per image, <= 25 % foreground).
    _C.MODEL.ROI_HEADS.SAMPLER.NAME = "BalancedRandomSampler"
    # Seed of the sampler's own generator; < 0 = torch's global RNG (as detectron2).
    _C.MODEL.ROI_HEADS.SAMPLER.SEED = -1
    # Deprecated (removed in the next release): a background IoU lower bound lo > 0 warns and
    # becomes detectron2's IOU_THRESHOLDS [lo, 0.5] with IOU_LABELS [-1, 0, 1].
    _C.MODEL.ROI_HEADS.BG_IOU_LO = 0.0
    # OHEMSampler (MODEL.ROI_HEADS.SAMPLER.NAME "OHEMSampler"): IoU above which a candidate is
    # suppressed by a harder one before the hardest BATCH_SIZE_PER_IMAGE are kept (the paper:
    # 0.7; 1.0 = no NMS).
    _C.MODEL.ROI_HEADS.OHEM_NMS_THRESH = 0.7
    _C.MODEL.ROI_HEADS.SOFT_NMS = CN()
    # Test-time Soft-NMS of the ROI heads: "none" (detectron2's NMS), "linear" (scores times
    # 1 - IoU above NMS_THRESH_TEST) or "gaussian" (times exp(-IoU^2 / SIGMA)).
    _C.MODEL.ROI_HEADS.SOFT_NMS.METHOD = "none"
    # Sigma of the Gaussian Soft-NMS (the paper: 0.5).
    _C.MODEL.ROI_HEADS.SOFT_NMS.SIGMA = 0.5
    # Soft-NMS drops boxes whose decayed score falls below this floor.
    _C.MODEL.ROI_HEADS.SOFT_NMS.SCORE_THRESH = 0.001

    # ---------------------------------------------------------------------------------------
    # Reliability (issue 7): bad data, non-finite losses, multi-process checks. See
    # docs/reliability.md; frcnn_plugin.config_checks.validate_frcnn_config checks them.
    # ---------------------------------------------------------------------------------------
    # Non-finite (NaN/inf) loss: "error" (stop, naming the loss and the iteration) or "skip"
    # (skip that optimizer step, count it in EventStorage as nonfinite_loss/skipped_steps).
    _C.SOLVER.NONFINITE_LOSS = "error"
    # With "skip": stop with an error after this many consecutive skipped steps.
    _C.SOLVER.NONFINITE_LOSS_MAX_SKIPS = 10
    # Multi-process training: every N iterations check that all processes hold identical
    # parameters (checksums gathered from every rank); 0 = off.
    _C.SOLVER.SYNC_CHECK_PERIOD = 0
    # Training boxes of zero or negative size, non-finite, or wholly outside their image:
    # "drop" (drop the box at load time, logged with counts) or "error" (fail at load time,
    # naming the image).
    _C.DATALOADER.INVALID_BOXES = "drop"
    # Unreadable training images (missing, corrupt, wrong size) are skipped, logged and counted
    # (data/skipped_samples); this many in a row stop training with an error.
    _C.DATALOADER.MAX_CONSECUTIVE_BAD_SAMPLES = 10

    # ---------------------------------------------------------------------------------------
    # Your own data sets (see docs/own-data.md), registered by
    # load_frcnn_config with detectron2's register_coco_instances / register_pascal_voc
    # (frcnn_plugin.data.own); DATASETS.TRAIN / TEST can then name them.
    # ---------------------------------------------------------------------------------------
    # A list of entries: {NAME, FORMAT: "coco", JSON_FILE, IMAGE_ROOT} or {NAME, FORMAT: "voc",
    # ROOT (with Annotations/, ImageSets/Main/, JPEGImages/), SPLIT, CLASS_NAMES, YEAR (2007:
    # 11-point AP, default; 2012)}. [] = none.
    _C.DATASETS.REGISTER = []

    # ---------------------------------------------------------------------------------------
    # Inspection (issue 5): pictures of predictions against GT during training, written to
    # TensorBoard through EventStorage.put_image by frcnn_plugin.engine.vis_hook (see
    # docs/inspection.md). GT green, predictions magenta.
    # ---------------------------------------------------------------------------------------
    # Every N iterations (and after the last) draw predictions on validation images; 0 = off.
    _C.TEST.VIS_PERIOD = 0
    # Number of images drawn: the first N of DATASETS.TEST[0] (DATASETS.TRAIN[0] if no test set).
    _C.TEST.VIS_NUM_IMAGES = 4
    # Only predictions with a score >= this are drawn.
    _C.TEST.VIS_SCORE_THRESH = 0.5

    _add_missing(cfg, _C)
    return cfg
