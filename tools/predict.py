#!/usr/bin/env python
"""Run a trained detector on images, folders, glob patterns and videos.

Examples::

    python tools/predict.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --weights output/shapes_demo/model_final.pth --input photos/ --output predictions/
    python tools/predict.py --config-file my_config.yaml --input "shots/**/*.jpg" clip.mp4 \
        --output out/ --score-thresh 0.7 --batch-size 4 --device cuda
    python tools/predict.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --backend onnx --weights exported/model.onnx --input photos/ --output predictions/

Writes to ``--output``: each image with its detections drawn (same file name), each video as an
annotated ``.mp4``, ``predictions.json`` (COCO results: image_id, category_id, bbox XYWH, score)
and ``predictions.jsonl`` (one line per image or frame: file, width, height, detections with
class names). Existing files are refused (before any work) unless ``--overwrite``. Images that
cannot be read are reported and skipped. Class names come from the metadata of
``DATASETS.TEST[0]`` (else ``DATASETS.TRAIN[0]``). Trailing ``KEY VALUE`` pairs override the
config. A Python config (``configs/lazy/*.py``) takes ``key=value`` overrides, its class names
from ``dataloader.test.dataset.names`` and its weights from ``train.init_checkpoint``.
``--backend torchscript|onnx`` runs a file of ``tools/export_model.py`` (given as
``--weights``) instead of the checkpoint, with the same outputs. A user's mistake ends with one
``error: ...`` paragraph and exit status 2; ``--debug`` (or ``FRCNN_DEBUG=1``) shows the
traceback.
"""
import argparse
import logging

import torch

import frcnn_plugin  # noqa: F401  (registers the components and data sets)
from frcnn_plugin.cli import (
    CheckpointError,
    ConfigError,
    add_debug_flag,
    command_line,
    float_in_range,
    int_in_range,
    run_cli,
    weights_of,
)
from frcnn_plugin.export import BACKENDS, FILE_NAMES, check_metadata, load_exported
from frcnn_plugin.inspection.cli import build_inspection_model, setup_cfg
from frcnn_plugin.lazy import is_lazy_config
from frcnn_plugin.predict import plan_outputs, run_predictions

logger = logging.getLogger("frcnn_plugin.predict")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", "--config", required=True, metavar="FILE")
    parser.add_argument(
        "--weights", default=None, metavar="FILE",
        help="checkpoint (default: the config's MODEL.WEIGHTS); --weights '' runs an untrained "
             "model")
    parser.add_argument(
        "--input", nargs="+", required=True, metavar="PATH",
        help="images, folders (their images and videos), glob patterns (quote them) or videos")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--score-thresh", type=float_in_range(0, 1), default=0.5, metavar="S",
        help="draw and write detections with a score >= S (default 0.5); the model's "
             "MODEL.ROI_HEADS.SCORE_THRESH_TEST is lowered to S if higher")
    parser.add_argument("--batch-size", type=int_in_range(1), default=1, metavar="N",
                        help="images or video frames per forward pass (default 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files that exist already")
    parser.add_argument(
        "--dataset", metavar="NAME", default=None,
        help="the inputs are images of this registered data set: predictions.json carries its "
             "image ids (for tools/analyze_results.py --dataset NAME); default: 0, 1, ...")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="eager",
        help="eager (default: the checkpoint in PyTorch), or a file of tools/export_model.py "
             "given as --weights: torchscript (model.ts) or onnx (model.onnx, onnxruntime on "
             "the CPU)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: the config's MODEL.DEVICE (cpu without CUDA)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="always show the progress bar (default: on a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides")
    return parser


def load_config(args):
    """The checked, frozen config, with ``--device`` and ``--score-thresh`` applied."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but CUDA is not available here; allowed: --device cpu")
    cfg = setup_cfg(args.config_file, args.opts, allow_lazy=True, device=args.device)
    if cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST > args.score_thresh:
        if is_lazy_config(args.config_file):
            cfg.set_score_thresh(args.score_thresh)
        else:
            cfg.defrost()
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.score_thresh
            cfg.freeze()
    return cfg


def check_backend_weights(args):
    """Another backend than eager runs an exported file: ``--weights`` is needed (the config's
    ``MODEL.WEIGHTS`` is a checkpoint)."""
    if args.backend != "eager" and not args.weights:
        raise CheckpointError(
            "--backend {} runs an exported file: give it as --weights FILE (the {} written by "
            "tools/export_model.py --format {}); allowed: --weights FILE, or --backend "
            "eager".format(args.backend, FILE_NAMES[args.backend], args.backend))


def load_exported_model(cfg, path, args):
    """The exported file as a model (:func:`frcnn_plugin.export.load_exported`), checked
    against the config's input settings."""
    if args.backend == "onnx" and cfg.MODEL.DEVICE.startswith("cuda"):
        raise ConfigError("--backend onnx runs in onnxruntime on the CPU; allowed: --device cpu "
                          "(or MODEL.DEVICE cpu), or --backend torchscript / eager")
    model = load_exported(path, args.backend, device=cfg.MODEL.DEVICE)
    check_metadata(model, cfg)
    baked = model.metadata.get("score_thresh_test")
    if baked is not None and baked > args.score_thresh:
        logger.warning("%s was exported with MODEL.ROI_HEADS.SCORE_THRESH_TEST %g: it returns "
                       "no detection below that score (--score-thresh %g)", path, baked,
                       args.score_thresh)
    return model


def main(argv=None):
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args)
    plan = plan_outputs(args.input, args.output, overwrite=args.overwrite,  # before any work
                        dataset=args.dataset)
    check_backend_weights(args)
    weights = weights_of(cfg, args.weights, args.config_file)  # --weights, else MODEL.WEIGHTS
    if args.backend == "eager":
        model, untrained = build_inspection_model(cfg, weights)
        if untrained:
            logger.warning("The weights do not set %s: these predictions are not those of a "
                           "trained detector", ", ".join(untrained))
    else:
        model = load_exported_model(cfg, weights, args)
    summary = run_predictions(cfg, model, plan, score_thresh=args.score_thresh,
                              batch_size=args.batch_size, progress=args.progress,
                              redo=command_line(argv or [], add=["--overwrite"]))
    print(summary.text(plan, args.score_thresh), flush=True)
    return summary


if __name__ == "__main__":
    run_cli(main)
