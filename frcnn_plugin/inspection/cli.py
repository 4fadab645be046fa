"""Shared command-line plumbing of the inspection tools (``tools/inspect_pipeline.py``,
``tools/visualize_anchors.py``, ``tools/analyze_anchors.py``)."""
import argparse
import logging
from typing import List, Optional, Tuple

import torch

from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from ..cli import UserError, add_debug_flag
from ..config import load_frcnn_config
from ..config_checks import config_errors, validate_frcnn_config
from ..engine.checkpoint import AtomicCheckpointer
from .inputs import InspectionInput, load_dataset_input, load_image_input

__all__ = [
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
    if len(values) != 4:
        raise argparse.ArgumentTypeError("expected 4 numbers X0,Y0,X1,Y1, got {!r}".format(text))
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
        parser.add_argument("--index", type=int, default=0, help="image index in --dataset")
        parser.add_argument(
            "--gt-box", type=_box, action="append", default=[], metavar="X0,Y0,X1,Y1",
            help="with --image: a GT box (XYXY, original-image pixels, class 0); repeatable")
    if weights:
        parser.add_argument(
            "--weights", default=None, metavar="FILE",
            help="checkpoint to load (default: the config's MODEL.WEIGHTS); --weights '' loads "
                 "none: an untrained model")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides")
    return parser


def setup_cfg(config_file: str, opts: Optional[List[str]] = None):
    """load_frcnn_config (get_cfg + add_frcnn_config + the file + the overrides), checked by
    validate_frcnn_config, frozen; MODEL.DEVICE falls back to "cpu" without CUDA.

    Raises:
        UserError: a missing config file, a bad key or value (see :mod:`frcnn_plugin.cli`).
    """
    cfg = load_frcnn_config(config_file, opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    validate_frcnn_config(cfg)
    cfg.freeze()
    return cfg


def build_inspection_model(cfg, weights: Optional[str] = None) -> Tuple[torch.nn.Module, list]:
    """build_model(cfg) in eval mode, with a checkpoint loaded and the config's inference-only
    transforms applied (``MODEL.ROI_BOX_HEAD.FC_INT8``).

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
    from ..modeling.quantize import prepare_for_inference

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
