#!/usr/bin/env python
"""How well a config's anchors fit a registered data set's boxes, and anchors that fit better.

    python tools/analyze_anchors.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --dataset frcnn_shapes_train [--out-dir DIR] [--json OUT] [--max-images N] [KEY VALUE ...]

Boxes are resized as INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST resize their image; anchors come from
the config's anchor generator on the backbone's own feature sizes for each image size (a
forward on the meta device: shapes only, no computation). Prints the share of GT boxes whose
best anchor has IoU >= 0.7, >= 0.5 and < 0.3, the positives per GT, GT sizes and ratios, and
suggested MODEL.ANCHOR_GENERATOR keys as YAML with the share they reach. With --out-dir, also
the plot DIR/anchor_fit.png; with --json, the numbers as JSON (existing ones replaced only with
--overwrite). A user's mistake ends with one
``error: ...`` paragraph and exit status 2 (``--debug``: the traceback). The logic is
frcnn_plugin.inspection.anchor_fit (one module per job: data, scoring, search, analysis, report,
plot).
"""
import logging
import os

from frcnn_plugin.cli import int_in_range, run_cli
from frcnn_plugin.inspection.anchor_fit import (
    analyze_dataset, format_report, plot_fit, result_to_dict,
)
from frcnn_plugin.inspection.cli import input_parser, setup_cfg
from frcnn_plugin.outputs import check_output_dir, check_output_file, write_json


def argument_parser():
    parser = input_parser(__doc__.split("\n")[0], image_input=False, weights=False)
    parser.add_argument("--dataset", required=True, metavar="NAME", help="a registered data set")
    parser.add_argument("--out-dir", default="", help="write the plot anchor_fit.png here")
    parser.add_argument("--json", metavar="OUT", help="write the numbers as JSON to OUT")
    parser.add_argument("--max-images", type=int_in_range(0, note=" (0: all)"), default=0,
                        help="only the first N images (0: all)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing anchor_fit.png / --json file")
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    if args.out_dir:  # before any work
        check_output_dir(args.out_dir, "--out-dir", ("anchor_fit.png",), args.overwrite)
    if args.json:
        check_output_file(args.json, "--json", args.overwrite)
    logging.basicConfig(level=logging.WARNING)
    cfg = setup_cfg(args.config_file, args.opts)
    result = analyze_dataset(cfg, args.dataset, max_images=args.max_images)
    print(format_report(result))
    if args.out_dir:
        print("Plot: " + plot_fit(result, os.path.join(args.out_dir, "anchor_fit.png")))
    if args.json:
        write_json(args.json, result_to_dict(result))
    return result


if __name__ == "__main__":
    run_cli(main)
