#!/usr/bin/env python
"""Plot detectron2 training curves from one or more metrics.json files, overlaid.

    python tools/plot_metrics.py output/shapes_demo/metrics.json output/d2_heads/metrics.json \
        --label plugin --label "detectron2 heads" --smooth 5 --out metrics.png

Panels (each only when some run has its keys): losses, learning rate, RoI samples per image
(detectron2's num_fg/bg_samples, OHEM's mined ones), RPN anchors per image, evaluation AP.
Runs are labelled with --label (one per file, in order; default: the file's folder name).
Lines that are not metrics records are skipped with a warning. A user's mistake ends with one
``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
"""
import argparse
import logging
import os

from frcnn_plugin.analysis import load_metrics, plot_metrics
from frcnn_plugin.cli import ConfigError, add_debug_flag, run_cli


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", metavar="metrics.json")
    parser.add_argument("--label", action="append", default=[],
                        help="a run's name, once per file (default: its folder)")
    parser.add_argument("--smooth", type=int, default=1,
                        help="moving median over N logged values (default 1: none)")
    parser.add_argument("--out", default="metrics.png", help="the PNG to write")
    add_debug_flag(parser)
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    if args.label and len(args.label) != len(args.files):
        raise ConfigError("{} --label for {} files; allowed: none, or one per file".format(
            len(args.label), len(args.files)))
    if args.smooth < 1:
        raise ConfigError("--smooth {}; allowed: an integer >= 1".format(args.smooth))
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    labels = args.label or [os.path.basename(os.path.dirname(os.path.abspath(f)))
                            for f in args.files]
    if len(set(labels)) < len(labels):
        labels = ["{} ({})".format(n, i + 1) for i, n in enumerate(labels)]
    runs = {label: load_metrics(f) for label, f in zip(labels, args.files)}
    if os.path.dirname(os.path.abspath(args.out)):
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    path = plot_metrics(runs, args.out, window=args.smooth)
    print("Wrote " + path)
    return runs


if __name__ == "__main__":
    run_cli(main)
