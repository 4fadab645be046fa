#!/usr/bin/env python
"""Run one image through a detector and print one table row per stage (the paper's walk-through).

    python tools/inspect_pipeline.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --dataset frcnn_shapes_train --index 0 [--weights W] [--json OUT] [KEY VALUE ...]
    python tools/inspect_pipeline.py --config-file configs/Base-VGG16-FRCNN.yaml \
        --image image.png [--gt-box X0,Y0,X1,Y1 ...] [--mode train] INPUT.MIN_SIZE_TEST 800

Rows: input size after the test-time resize, backbone features, anchors, anchors inside the
image, anchor labels (positive / negative / ignored) and the sampled ones (need GT: from the
data set record or --gt-box; "n/a" without), RPN head outputs, proposals before and after NMS,
sampled RoIs (foreground / background), RoI pooling, box head, class scores, box deltas and
final detections. Stages a model lacks print "n/a". ``--json`` writes the same rows as JSON (an
existing file only with ``--overwrite``).
``--weights W`` loads a checkpoint (default: MODEL.WEIGHTS; ``--weights ''``: none, untrained).
A user's mistake ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the
traceback). The logic is frcnn_plugin.inspection.pipeline
(trace.py computes the stages, render.py writes the table and the JSON).
"""
import logging

from frcnn_plugin.cli import run_cli
from frcnn_plugin.inspection.cli import build_inspection_model, input_parser, load_input, setup_cfg
from frcnn_plugin.inspection.pipeline import format_table, trace_pipeline, trace_to_dict
from frcnn_plugin.outputs import check_output_file, write_json


def argument_parser():
    parser = input_parser(__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="OUT", help="also write the rows as JSON to OUT")
    parser.add_argument("--mode", choices=("test", "train"), default="test",
                        help="the RPN's test-time (default) or training top-k for proposals")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    if args.json:
        check_output_file(args.json, "--json", args.overwrite)  # before any work
    logging.basicConfig(level=logging.WARNING)
    cfg = setup_cfg(args.config_file, args.opts, allow_lazy=True)
    inp = load_input(cfg, args)
    model, untrained = build_inspection_model(cfg, args.weights)
    trace = trace_pipeline(model, inp, mode=args.mode)
    print("{} ({}×{} original), {}:".format(
        trace.source, trace.original_size[0], trace.original_size[1], args.config_file))
    print(format_table(trace.stages))
    if untrained:
        print("Note: random weights in {} (no checkpoint, or not in it): proposals and "
              "detections are not a trained model's.".format(", ".join(untrained)))
    if args.json:
        write_json(args.json, trace_to_dict(trace))
    return trace


if __name__ == "__main__":
    run_cli(main)
