"""Shared command-line plumbing of the inspection tools (``tools/inspect_pipeline.py``,
``tools/visualize_anchors.py``, ``tools/analyze_anchors.py``)."""
import argparse
import logging
from typing import List, Optional

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from ..config import load_frcnn_config
from .inputs import InspectionInput, load_dataset_input, load_image_input

__all__ = ["input_parser", "setup_cfg", "build_inspection_model", "load_input"]

logger = logging.getLogger(__name__)


def _box(text: str) -> List[float]:
    values = [float(v) for v in text.replace(",", " ").split()]
    if len(values) != 4:
        raise argparse.ArgumentTypeError("expected 4 numbers X0,Y0,X1,Y1, got {!r}".format(text))
    return values


def input_parser(description: str, image_input: bool = True,
                 weights: bool = True) -> argparse.ArgumentParser:
    """An argument parser with ``--config-file``, the input (``--image`` [``--gt-box`` ...] or
    ``--dataset`` ``--index``), ``--weights`` and trailing ``KEY VALUE`` overrides."""
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
        parser.add_argument("--weights", default="", metavar="FILE",
                            help="checkpoint to load (default: MODEL.WEIGHTS; '' = untrained)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides")
    return parser


def setup_cfg(config_file: str, opts: Optional[List[str]] = None):
    """get_cfg + add_frcnn_config + the file + the overrides; MODEL.DEVICE falls back to "cpu"
    without CUDA. Raises SystemExit with a readable message for a bad key or value."""
    try:
        cfg = load_frcnn_config(config_file, opts)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def build_inspection_model(cfg, weights: str = ""):
    """build_model(cfg), with ``weights`` (or MODEL.WEIGHTS) loaded when given; eval mode.
    With ``SEED >= 0`` the RNGs are seeded first, so untrained weights and the samplers'
    draws are reproducible."""
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED)
    model = build_model(cfg)
    path = weights or cfg.MODEL.WEIGHTS
    if path:
        DetectionCheckpointer(model).load(path)
    else:
        logger.info("No weights given: the model is untrained (random initialization)")
    return model.eval()


def load_input(cfg, args) -> InspectionInput:
    """The image of ``--image`` / ``--dataset --index``."""
    if args.image:
        return load_image_input(cfg, args.image, args.gt_box or None)
    if args.gt_box:
        raise SystemExit("--gt-box goes with --image; --dataset images have their own GT")
    return load_dataset_input(cfg, args.dataset, args.index)
