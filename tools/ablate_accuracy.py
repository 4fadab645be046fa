#!/usr/bin/env python
"""Which design differences cost accuracy: the plugin against torchvision's FasterRCNN at equal
budget, one switch at a time, mean ± std over seeds.

    python tools/ablate_accuracy.py --config-file configs/vgg16_frcnn_shapes_hard.yaml \
        --seeds 3 --out-dir output/ablation [--switches a,b] [--peers ...] \
        [--pretrained CKPT] [KEY VALUE ...]

Every run trains one model for SOLVER.MAX_ITER iterations with the trainer of
tools/train_net.py (SEED = the run's seed; the same data, order, schedule and optimizer for
every model), in its own OUTPUT_DIR (OUT_DIR/runs/<row>_<seed>), then evaluates COCO AP on
DATASETS.TEST[0]. Rows: the plugin as configured; the
plugin with each switch (benchmarks.ablation.SWITCHES); torchvision with its own
default initialization and with the plugin's initial weights. With --pretrained, every model
starts from that checkpoint's backbone and fc6/fc7 (as from ImageNet weights; the RPN and the
predictor keep each model's own initialization, or the plugin's for "copied init"). Runs are
saved one by one in OUT_DIR/ablation.json: a second call with the same OUT_DIR resumes. The
table (Markdown) goes to stdout and to OUT_DIR/ablation.md. A user's mistake ends with one
``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
"""
import argparse
import logging
import os
import sys

from frcnn_plugin.cli import add_debug_flag, int_in_range, load_config, run_cli
from frcnn_plugin.outputs import check_output_dir, write_text

# The benchmark lab (benchmarks/, beside tools/) is not installed with frcnn_plugin: import it
# from this checkout, whatever the current folder.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks.ablation import (  # noqa: E402
    PEER_ROWS, SWITCHES, format_table, run_ablation, summarize,
)


def _names(allowed, what):
    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if bad:
            raise argparse.ArgumentTypeError("unknown {} {}; allowed: {}".format(
                what, ", ".join(bad), ", ".join(allowed)))
        return names
    return parse


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--seeds", type=int_in_range(1), default=3,
                        help="seeds 0 .. N-1 (default 3)")
    parser.add_argument("--switches", type=_names(list(SWITCHES), "switch"),
                        default=list(SWITCHES), help="comma-separated (default: all)")
    parser.add_argument("--peers", type=_names(list(PEER_ROWS), "peer"),
                        default=list(PEER_ROWS), help="comma-separated (default: both)")
    parser.add_argument("--skip-plugin", action="store_true",
                        help="do not train the plugin as configured (e.g. only the peers, under "
                             "KEY VALUE settings the plugin was measured with as a switch)")
    parser.add_argument("--out-dir", default="output/ablation")
    parser.add_argument("--pretrained", metavar="CKPT",
                        help="start every model from this checkpoint's backbone and fc6/fc7 "
                             "(e.g. a model trained on another data set)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    add_debug_flag(parser)
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    check_output_dir(args.out_dir, "--out-dir")  # a folder that can be written (a second
    # call with the same --out-dir resumes: its results are kept)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    # as train_net.py: a bad value is one error naming the allowed ones, before any run
    cfg = load_config(args.config_file, args.opts)
    results = run_ablation(cfg, args.switches, args.peers, list(range(args.seeds)),
                           args.out_dir, pretrained=args.pretrained,
                           plugin=not args.skip_plugin)
    table = format_table(summarize(results))
    print(table)
    write_text(os.path.join(args.out_dir, "ablation.md"), table + "\n")
    return results


if __name__ == "__main__":
    run_cli(main)
