#!/usr/bin/env python
"""Pictures of anchors and of the RPN's and ROI heads' training targets for one image (PNG).

    python tools/visualize_anchors.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --dataset frcnn_shapes_train --index 0 --out-dir output/anchors [--weights W]
    python tools/visualize_anchors.py --config-file CFG --image img.png --gt-box 10,20,60,90

Writes base_anchors.png, shifted_anchors.png, and with GT iou_heatmap.png,
positive_anchors.png, rpn_samples.png and roi_samples.png. positive_anchors.png also shows the
positives decoded with the RPN's deltas (predictions) when the checkpoint (--weights, default
MODEL.WEIGHTS; --weights '' = none) holds trained RPN and box-predictor weights; with random
ones (no weights, or ImageNet weights: backbone and fc6/fc7 only) they are left out with a note,
unless --force-predictions. Colours: GT green (0, 255, 0), positives / foreground red
(255, 0, 0), negatives / background blue (0, 0, 255), predictions magenta (255, 0, 255); see
frcnn_plugin.inspection.anchor_viz for every picture. A user's mistake ends with one
``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
"""
import logging

from frcnn_plugin.cli import ConfigError, int_in_range, run_cli
from frcnn_plugin.inspection.anchor_viz import draw_all
from frcnn_plugin.inspection.cli import build_inspection_model, input_parser, load_input, setup_cfg
from frcnn_plugin.inspection.draw import display_scale
from frcnn_plugin.inspection.pipeline import trace_pipeline
from frcnn_plugin.outputs import check_output_dir

PICTURES = ("base_anchors.png", "shifted_anchors.png", "iou_heatmap.png", "positive_anchors.png",
            "rpn_samples.png", "roi_samples.png")


def argument_parser():
    parser = input_parser(__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="output/anchor_pictures")
    parser.add_argument("--scale", type=int_in_range(0, note=" (0: automatic)"), default=0,
                        help="integer zoom (default 0: long side of at least 384 px)")
    parser.add_argument("--gt-index", type=int_in_range(0), default=0,
                        help="GT box of the IoU heat-map (from 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the pictures of an earlier run in --out-dir")
    parser.add_argument("--force-predictions", action="store_true",
                        help="draw the RPN's predictions even if its weights are random")
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    check_output_dir(args.out_dir, "--out-dir", PICTURES, args.overwrite)  # before any work
    cfg = setup_cfg(args.config_file, args.opts, allow_lazy=True)
    inp = load_input(cfg, args)
    n_gt = 0 if inp.gt is None else len(inp.gt)
    if args.gt_index and args.gt_index >= n_gt:
        raise ConfigError("--gt-index {}: the image has {} GT box(es); allowed: 0 ... {}".format(
            args.gt_index, n_gt, max(n_gt - 1, 0)) if n_gt else
            "--gt-index {}: the image has no GT box; allowed: --gt-box or --dataset for GT, "
            "then --gt-index 0 ... N-1".format(args.gt_index))
    model, untrained = build_inspection_model(cfg, args.weights)
    trace = trace_pipeline(model, inp)
    scale = args.scale or display_scale(trace.image_size)
    predictions = args.force_predictions or not untrained
    written = draw_all(trace, args.out_dir, scale, gt_index=args.gt_index,
                       predictions=predictions)
    for name, path in written.items():
        print("{:18} {}".format(name, path))
    if trace.gt is None:
        print("No ground truth: only the anchor pictures (use --dataset or --gt-box).")
    if untrained:
        print("Note: random weights in {} (no checkpoint, or not in it): {}.".format(
            ", ".join(untrained),
            "predictions drawn anyway (--force-predictions)" if predictions else
            "no predictions drawn (--force-predictions draws them anyway)"))
    return written


if __name__ == "__main__":
    run_cli(main)
