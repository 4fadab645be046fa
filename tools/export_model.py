#!/usr/bin/env python
"""Export a trained detector to TorchScript or ONNX by tracing, checked against the eager model.

Examples::

    python tools/export_model.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --weights output/shapes_demo/model_final.pth --format onnx \
        --sample-image photos/a.jpg photos/b.jpg --output exported/
    python tools/export_model.py --config-file my_config.yaml --format torchscript \
        --export-method tracing --output exported/ MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3

Flags follow detectron2's ``tools/deploy/export_model.py`` (``--config-file``,
``--export-method``, ``--format``, ``--output``, ``--sample-image``, trailing ``KEY VALUE``
overrides). Writes ``model.ts`` or ``model.onnx`` to ``--output`` (an existing file only with
``--overwrite``): the whole test-time model for one image, inputs ``height``, ``width`` (the
original size) and ``image`` (resized, (C, H, W) float32), outputs ``boxes`` (original-image
pixels), ``scores`` and ``classes``. The first sample image is traced; every sample image is run
by the exported file (TorchScript, or ONNX in onnxruntime on the CPU) and by the eager model, and
a table of the differences per output is printed. Without ``--sample-image`` the first image of
``DATASETS.TEST[0]`` is used; when neither model detects anything on them, the line says
"NOTHING COMPARED" instead of "check passed". Run the file with ``tools/predict.py --backend``. With
``--format onnx --int8-calibration N`` also ``model_int8.onnx``: the checked file with its
convolutions and fc layers quantized to int8 by ONNX Runtime (static, calibrated on the first N
images of ``DATASETS.TRAIN[0]``), run by ``--backend onnx`` too.

A user's mistake ends with one ``error: ...`` paragraph and exit status 2; ``--debug`` (or
``FRCNN_DEBUG=1``) shows the traceback. A failed check writes nothing and exits with status 2.
"""
import argparse
import logging

from detectron2.data.detection_utils import read_image

import frcnn_plugin  # noqa: F401  (registers the components and data sets)
from frcnn_plugin.cli import (
    BadImageError,
    ConfigError,
    add_debug_flag,
    float_in_range,
    int_in_range,
    run_cli,
    weights_of,
)
from frcnn_plugin.data.checks import load_dataset_dicts
from frcnn_plugin.data.mappers import BAD_IMAGE_ERRORS
from frcnn_plugin.export import (
    BOX_ATOL,
    EXPORT_METHODS,
    FORMATS,
    ONNX_OPSET,
    SCORE_ATOL,
    calibration_inputs,
    check_exportable,
    export_int8,
    export_model,
    output_path,
)
from frcnn_plugin.inspection.cli import build_inspection_model, setup_cfg
from frcnn_plugin.outputs import check_output_dir
from frcnn_plugin.predict.inputs import expand_inputs

logger = logging.getLogger("frcnn_plugin.export")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", "--config", required=True, metavar="FILE")
    parser.add_argument(
        "--weights", default=None, metavar="FILE",
        help="checkpoint (default: the config's MODEL.WEIGHTS); --weights '' exports an "
             "untrained model")
    parser.add_argument("--export-method", choices=EXPORT_METHODS, default="tracing",
                        help="tracing (default; scripting is refused with the reason)")
    parser.add_argument("--format", choices=FORMATS, default="torchscript",
                        help="torchscript (model.ts) or onnx (model.onnx, opset {})".format(
                            ONNX_OPSET))
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--sample-image", nargs="+", default=None, metavar="PATH",
        help="images (files, folders, glob patterns) to trace (the first) and to check (all); "
             "default: the first image of DATASETS.TEST[0]")
    parser.add_argument("--box-atol", type=float_in_range(0), default=BOX_ATOL, metavar="PX",
                        help="largest box difference allowed, in pixels (default %(default)g)")
    parser.add_argument("--score-atol", type=float_in_range(0), default=SCORE_ATOL, metavar="S",
                        help="largest score difference allowed (default %(default)g)")
    parser.add_argument("--keep-on-mismatch", action="store_true",
                        help="write the file even if the check fails")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing model.ts / model.onnx (/ model_int8.onnx)")
    parser.add_argument(
        "--int8-calibration", type=int_in_range(1), default=None, metavar="N",
        help="--format onnx: also write model_int8.onnx, its convolutions and fc layers "
             "quantized to int8 by ONNX Runtime (static, calibrated on the first N images of "
             "DATASETS.TRAIN[0]; e.g. 8); its differences from the eager model are printed")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides")
    return parser


def sample_images(cfg, patterns):
    """(name, image in INPUT.FORMAT) of ``--sample-image``, else of DATASETS.TEST[0]'s first
    image."""
    if patterns:
        sources = expand_inputs(patterns, flag="--sample-image")
        paths = [s.path for s in sources]
        videos = [s.path for s in sources if s.kind == "video"]
        if videos:
            raise ConfigError("--sample-image {}: a video; allowed: image files".format(
                videos[0]))
    else:
        if not cfg.DATASETS.TEST:
            raise ConfigError("No --sample-image and DATASETS.TEST is empty; allowed: "
                              "--sample-image IMAGE ..., or a DATASETS.TEST data set")
        paths = [load_dataset_dicts(cfg.DATASETS.TEST[0])[0]["file_name"]]
    samples = []
    for path in paths:
        try:
            samples.append((path, read_image(path, format=cfg.INPUT.FORMAT)))
        except BAD_IMAGE_ERRORS as e:
            raise BadImageError("--sample-image {}: cannot be read as an image ({}: {}); "
                                "allowed: image files Pillow reads".format(
                                    path, type(e).__name__, e))
    return samples


def main(argv=None):
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    check_output_dir(args.output, "--output")  # before any work: a folder that can be written
    cfg = setup_cfg(args.config_file, args.opts, device="cpu")
    check_exportable(cfg, args.export_method, args.format)
    path = output_path(args.output, args.format, args.overwrite)  # before any work
    int8_path = None
    if args.int8_calibration is not None:
        if args.format != "onnx":
            raise ConfigError("--int8-calibration quantizes an ONNX model; allowed with "
                              "--format onnx")
        int8_path = output_path(args.output, "onnx_int8", args.overwrite)
        calibration = calibration_inputs(cfg, args.int8_calibration)
    samples = sample_images(cfg, args.sample_image)
    weights = weights_of(cfg, args.weights, args.config_file)  # --weights, else MODEL.WEIGHTS
    model, untrained = build_inspection_model(cfg, weights)
    if untrained:
        logger.warning("The weights do not set %s: this exports an untrained detector",
                       ", ".join(untrained))
    report = export_model(cfg, model, samples, args.export_method, args.format, path,
                          box_atol=args.box_atol, score_atol=args.score_atol,
                          keep_on_mismatch=args.keep_on_mismatch)
    print(report.table)
    if not any(r.eager or r.exported for r in report.rows):
        check = ("NOTHING COMPARED: neither model detected anything on the {} sample image(s), "
                 "so only the empty outputs agree; check with images it detects objects in "
                 "(--sample-image) or a lower MODEL.ROI_HEADS.SCORE_THRESH_TEST".format(
                     len(report.rows)))
    elif all(r.ok(args.box_atol, args.score_atol) for r in report.rows):
        check = "check passed ({} detection(s) compared)".format(
            sum(r.eager for r in report.rows))
    else:
        check = "CHECK FAILED (kept: --keep-on-mismatch)"
    print("{} {} ({}): {} in {:.1f} s".format(
        "Wrote" if report.written else "Did not write", report.path, args.format
        + (", opset {}".format(ONNX_OPSET) if args.format == "onnx" else ""),
        check, report.seconds), flush=True)
    if int8_path:
        int8 = export_int8(cfg, model, samples, report.path, int8_path, calibration)
        print(int8.table)
        print("Wrote {} (int8 Conv and Gemm, ONNX Runtime static quantization calibrated on {} "
              "image(s) of {}) in {:.1f} s".format(
                  int8.path, len(calibration), cfg.DATASETS.TRAIN[0], int8.seconds), flush=True)
    return report


if __name__ == "__main__":
    run_cli(main)
