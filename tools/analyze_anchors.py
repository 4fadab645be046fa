#!/usr/bin/env python
"""How well a config's anchors fit a registered data set's boxes, and anchors that fit better.

    python tools/analyze_anchors.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --dataset frcnn_shapes_train [--out-dir DIR] [--json OUT] [--max-images N] [KEY VALUE ...]

Boxes are resized as INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST resize their image; anchors come from
the config's anchor generator on the backbone's own feature sizes for each image size (a
forward on the meta device: shapes only, no computation). Prints the share of GT boxes whose
best anchor has IoU >= 0.7, >= 0.5 and < 0.3, the positives per GT, GT sizes and ratios, and
suggested MODEL.ANCHOR_GENERATOR keys as YAML with the share they reach. With --out-dir, also
the plot DIR/anchor_fit.png; with --json, the numbers as JSON. A user's mistake ends with one
``error: ...`` paragraph and exit status 2 (``--debug``: the traceback). The logic is
frcnn_plugin.inspection.anchor_fit (one module per job: data, scoring, search, analysis, report,
plot).
"""
import argparse
import json
import logging
import os

from frcnn_plugin.cli import run_cli
from frcnn_plugin.inspection.anchor_fit import (
    analyze_dataset, format_report, plot_fit, result_to_dict,
)
from frcnn_plugin.inspection.cli import input_parser, setup_cfg


def argument_parser():
    parser = input_parser(__doc__.split("\n")[0], image_input=False, weights=False)
    parser.add_argument("--dataset", required=True, metavar="NAME", help="a registered data set")
    parser.add_argument("--out-dir", default="", help="write the plot anchor_fit.png here")
    parser.add_argument("--json", metavar="OUT", help="write the numbers as JSON to OUT")
    parser.add_argument("--max-images", type=_non_negative, default=0,
                        help="only the first N images (0: all)")
    return parser


def _non_negative(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("{!r}: allowed: an integer >= 0".format(text))
    return value


def main(argv=None):
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = setup_cfg(args.config_file, args.opts)
    result = analyze_dataset(cfg, args.dataset, max_images=args.max_images)
    print(format_report(result))
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        print("Plot: " + plot_fit(result, os.path.join(args.out_dir, "anchor_fit.png")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result_to_dict(result), f, indent=2)
    return result


if __name__ == "__main__":
    run_cli(main)
