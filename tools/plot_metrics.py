#!/usr/bin/env python
"""Plot detectron2 training curves from one or more metrics.json files, overlaid.

    python tools/plot_metrics.py output/shapes_demo/metrics.json output/d2_heads/metrics.json \
        --label plugin --label "detectron2 heads" --smooth 5 --out metrics.png

Panels (each only when some run has its keys): losses, learning rate, RoI samples per image
(detectron2's num_fg/bg_samples, OHEM's mined ones), RPN anchors per image, evaluation AP.
Runs are labelled with --label (one per file, in order; default: the file's folder name).
Lines that are not metrics records are skipped with a warning; a resumed run's repeated
iterations keep their last value (the curves run forward). An existing --out is replaced only
with --overwrite. A user's mistake ends with one
``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
"""
import argparse
import logging
import os

from frcnn_plugin.analysis import load_metrics, plot_metrics
from frcnn_plugin.cli import ConfigError, add_debug_flag, int_in_range, run_cli
from frcnn_plugin.outputs import check_output_file


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", metavar="metrics.json")
    parser.add_argument("--label", action="append", default=[],
                        help="a run's name, once per file (default: its folder)")
    parser.add_argument("--smooth", type=int_in_range(1, note=" (1: no smoothing)"), default=1,
                        help="moving median over N logged values (default 1: none)")
    parser.add_argument("--out", default="metrics.png", help="the PNG to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_debug_flag(parser)
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    if args.label and len(args.label) != len(args.files):
        raise ConfigError("{} --label for {} files; allowed: none, or one per file".format(
            len(args.label), len(args.files)))
    check_output_file(args.out, "--out", args.overwrite)  # before any work
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    labels = args.label or [os.path.basename(os.path.dirname(os.path.abspath(f)))
                            for f in args.files]
    if len(set(labels)) < len(labels):
        labels = ["{} ({})".format(n, i + 1) for i, n in enumerate(labels)]
    runs = {label: load_metrics(f) for label, f in zip(labels, args.files)}
    path = plot_metrics(runs, args.out, window=args.smooth)
    print("Wrote " + path)
    return runs


if __name__ == "__main__":
    run_cli(main)
