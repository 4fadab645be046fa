"""Shared command-line plumbing of the inspection tools (``tools/inspect_pipeline.py``,
``tools/visualize_anchors.py``, ``tools/analyze_anchors.py``).

``tools/inspect_pipeline.py`` and ``tools/visualize_anchors.py`` also take a Python config
(detectron2's LazyConfig, ``*.py``, with ``key=value`` overrides): :func:`setup_cfg` then returns a
:class:`LazyInspectionConfig`, which offers the few values these tools read under their YAML
names (the test-time resize and image format of ``dataloader.test``, ``train.init_checkpoint``,
``train.device``, ``train.seed``) and builds the model with ``instantiate(cfg.model)``."""
import argparse
import logging
import math
from typing import List, Optional, Tuple

import torch

from detectron2.config import instantiate
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from ..cli import int_in_range, load_config
from ..config_checks import config_errors
from ..engine.checkpoint import AtomicCheckpointer
from ..errors import ConfigError, UserError, add_debug_flag
from ..lazy import is_lazy_config, lazy_config_errors
from ..modeling.quantize import prepare_for_inference
from .inputs import InspectionInput, load_dataset_input, load_image_input

__all__ = [
    "LazyInspectionConfig",
    "PREDICTION_HEADS",
    "input_parser",
    "setup_cfg",
    "build_inspection_model",
    "untrained_heads",
    "load_input",
]

logger = logging.getLogger(__name__)

# Modules whose outputs are predictions (boxes, scores): the RPN (with its head), the box
# predictor of the ROI heads, RetinaNet's head. Random weights there give random predictions.
PREDICTION_HEADS = ("proposal_generator", "roi_heads.box_predictor", "head")


def _box(text: str) -> List[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError("{!r}: allowed: 4 numbers X0,Y0,X1,Y1".format(text))
    if not (values[2] > values[0] and values[3] > values[1]):
        raise argparse.ArgumentTypeError(
            "{!r}: an empty or inverted box; allowed: X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0 "
            "(corners in original-image pixels)".format(text))
    return values


def input_parser(description: str, image_input: bool = True,
                 weights: bool = True) -> argparse.ArgumentParser:
    """An argument parser with ``--config-file``, the input (``--image`` [``--gt-box`` ...] or
    ``--dataset`` ``--index``), ``--weights``, ``--debug`` and trailing ``KEY VALUE``
    overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", "--config", required=True, metavar="FILE")
    if image_input:
        src = parser.add_mutually_exclusive_group(required=True)
        src.add_argument("--image", metavar="FILE", help="an image file (no GT unless --gt-box)")
        src.add_argument("--dataset", metavar="NAME", help="a registered data set")
        parser.add_argument("--index", type=int_in_range(0), default=0,
                            help="image index in --dataset (from 0)")
        parser.add_argument(
            "--gt-box", type=_box, action="append", default=[], metavar="X0,Y0,X1,Y1",
            help="with --image: a GT box (XYXY, original-image pixels, class 0); repeatable")
    if weights:
        parser.add_argument(
            "--weights", default=None, metavar="FILE",
            help="checkpoint to load (default: the config's MODEL.WEIGHTS, a Python config's "
                 "train.init_checkpoint); --weights '' loads none: an untrained model")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides (a Python config: key=value)")
    return parser


class _Node:
    """Attribute access to a few values, under YAML key names."""

    def __init__(self, **values):
        self.__dict__.update(values)


def _target_name(target) -> str:
    """The class name of a LazyCall's ``_target_`` (the class, or its dotted name)."""
    return getattr(target, "__name__", str(target).rsplit(".", 1)[-1])


class LazyInspectionConfig:
    """A Python config seen through the YAML keys that the inspection tools read:
    ``INPUT.FORMAT`` (``model.input_format``, else ``dataloader.test.mapper.image_format``),
    ``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST`` (the ``ResizeShortestEdge`` of
    ``dataloader.test.mapper.augmentations``), ``MODEL.WEIGHTS`` (``train.init_checkpoint``),
    ``MODEL.DEVICE`` (``train.device``, "cpu" without CUDA), ``SEED`` (``train.seed``),
    ``MODEL.ROI_HEADS.NUM_CLASSES`` / ``SCORE_THRESH_TEST`` (``model.roi_heads.num_classes``,
    ``model.roi_heads.box_predictor.test_score_thresh``) and ``DATASETS.TRAIN`` / ``TEST``
    (``dataloader.train`` / ``test.dataset.names``). ``lazy`` is the config itself."""

    def __init__(self, lazy):
        self.lazy = lazy
        train = lazy.get("train", {})
        mapper = lazy.get("dataloader", {}).get("test", {}).get("mapper", {})
        resize = [a for a in mapper.get("augmentations", [])
                  if _target_name(a.get("_target_", "")) == "ResizeShortestEdge"]
        if not resize:
            raise ConfigError("The Python config has no ResizeShortestEdge in "
                              "dataloader.test.mapper.augmentations; allowed: a config with "
                              "detectron2's test loader (e.g. configs/lazy/*.py)")
        image_format = lazy.model.get("input_format", None) or mapper.get("image_format", "BGR")
        device = str(train.get("device", "cpu"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        self.INPUT = _Node(FORMAT=image_format, MIN_SIZE_TEST=resize[0].short_edge_length,
                           MAX_SIZE_TEST=resize[0].get("max_size", 1333))
        roi_heads = lazy.model.get("roi_heads", {})
        predictor = roi_heads.get("box_predictor", {})
        self.MODEL = _Node(
            WEIGHTS=train.get("init_checkpoint", ""), DEVICE=device,
            ROI_HEADS=_Node(NUM_CLASSES=roi_heads.get("num_classes", 0),
                            SCORE_THRESH_TEST=predictor.get("test_score_thresh", 0.05)))
        loaders = lazy.get("dataloader", {})
        self.DATASETS = _Node(TRAIN=_dataset_names(loaders.get("train", {})),
                              TEST=_dataset_names(loaders.get("test", {})))
        self.SEED = int(train.get("seed", -1))

    def set_score_thresh(self, value: float):
        """``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` and the model's
        ``roi_heads.box_predictor.test_score_thresh``."""
        self.lazy.model.roi_heads.box_predictor.test_score_thresh = value
        self.MODEL.ROI_HEADS.SCORE_THRESH_TEST = value


def _dataset_names(loader) -> tuple:
    """A loader config's ``dataset.names`` (a name or a list) as a tuple; () if none."""
    names = loader.get("dataset", {}).get("names", ())
    return (names,) if isinstance(names, str) else tuple(names)


def setup_cfg(config_file: str, opts: Optional[List[str]] = None, allow_lazy: bool = False,
              device: Optional[str] = None):
    """The tool's config by :func:`frcnn_plugin.cli.load_config` (a YAML config checked and
    frozen; ``device``: ``MODEL.DEVICE``, else a CUDA device falls back to "cpu" without CUDA).
    With ``allow_lazy`` a Python config (``*.py``, ``key=value`` overrides) gives a
    :class:`LazyInspectionConfig`.

    Raises:
        UserError: a missing config file, a bad key or value (see :mod:`frcnn_plugin.errors`).
    """
    cfg = load_config(config_file, opts or (), kind="any" if allow_lazy else "yaml",
                      device=device)
    return LazyInspectionConfig(cfg) if is_lazy_config(config_file) else cfg


def build_inspection_model(cfg, weights: Optional[str] = None) -> Tuple[torch.nn.Module, list]:
    """build_model(cfg) (a Python config: ``instantiate(cfg.lazy.model)``) in eval mode, with a
    checkpoint loaded and, for a YAML config, the inference-only transforms applied
    (``MODEL.ROI_BOX_HEAD.FC_INT8``, ``MODEL.BF16_AUTOCAST``).

    With ``SEED >= 0`` the RNGs are seeded first, so untrained weights and the samplers' draws
    are reproducible.

    Args:
        weights (str or None): the checkpoint; None: the config's ``MODEL.WEIGHTS``; ``""``:
            none (an untrained model).

    Returns:
        (model, untrained): ``untrained`` lists the :data:`PREDICTION_HEADS` of the model that
        the checkpoint did not (fully) initialize, e.g. ``["proposal_generator",
        "roi_heads.box_predictor"]`` for ImageNet weights, and all of them without weights:
        their outputs are not predictions of a trained model.

    Raises:
        UserError: the checkpoint is missing, corrupt or of another model (the messages of
            :class:`~frcnn_plugin.engine.checkpoint.AtomicCheckpointer`); a config value that a
            component rejects.
    """
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED)
    if isinstance(cfg, LazyInspectionConfig):
        with lazy_config_errors("model"):
            model = instantiate(cfg.lazy.model)
        model.to(cfg.MODEL.DEVICE)
    else:
        with config_errors(cfg):
            model = build_model(cfg)
    path = cfg.MODEL.WEIGHTS if weights is None else weights
    if path:
        checkpointer = AtomicCheckpointer(model)
        checkpointer.load(path)
        unloaded = checkpointer.unloaded_parameters or []
    else:
        logger.info("No weights given: the model is untrained (random initialization)")
        unloaded = [n for n, _ in model.named_parameters()]

    return prepare_for_inference(cfg, model.eval()), untrained_heads(unloaded)


def untrained_heads(unloaded_parameters) -> List[str]:
    """The :data:`PREDICTION_HEADS` with at least one parameter among ``unloaded_parameters``
    (names as in ``model.named_parameters()``)."""
    return [head for head in PREDICTION_HEADS
            if any(n.startswith(head + ".") for n in unloaded_parameters)]


def load_input(cfg, args) -> InspectionInput:
    """The image of ``--image`` / ``--dataset --index``."""
    if args.image:
        return load_image_input(cfg, args.image, args.gt_box or None)
    if args.gt_box:
        raise UserError("--gt-box goes with --image; --dataset images have their own GT")
    return load_dataset_input(cfg, args.dataset, args.index)
