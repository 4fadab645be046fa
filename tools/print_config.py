#!/usr/bin/env python
"""Show the full config a tool would use: after ``_BASE_``, the overrides and
``DATASETS.REGISTER``, for a YAML or a Python config, with the keys that differ from detectron2's
defaults marked.

    python tools/print_config.py --config-file configs/vgg16_frcnn_shapes_demo.yaml [KEY VALUE ...]
    python tools/print_config.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py \
        --changed-only [key=value ...]
    python tools/print_config.py --config-file configs/vgg16_frcnn_voc.yaml --output merged.yaml

Marks, as a comment after the value: ``# * default: X``: another value than detectron2's
default X (a YAML config: ``get_cfg()``; a Python config: the default of that argument of the
node's ``_target_``, and for ``train`` detectron2's model zoo ``common/train.py``); ``# +``: a
key detectron2 does not have (the plugin's own). ``--changed-only``: the marked keys and the
nodes above them. ``--output FILE`` writes the text atomically, refusing an existing file
unless ``--overwrite``. A user's mistake ends with one ``error: ...`` paragraph and exit status
2 (``--debug``: the traceback). The logic is ``frcnn_plugin.inspection.config_view``.
"""
import argparse

from frcnn_plugin.cli import add_debug_flag, load_config, run_cli
from frcnn_plugin.inspection.config_view import config_lines, format_config_lines
from frcnn_plugin.outputs import check_output_file, write_text


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", "--config", required=True, metavar="FILE")
    parser.add_argument("--changed-only", action="store_true",
                        help="only the keys that differ from detectron2's defaults")
    parser.add_argument("--output", metavar="FILE", help="write the text to FILE")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides (a Python config: key=value)")
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    if args.output:  # before any work: a file that can be written, not an earlier one
        check_output_file(args.output, "--output", args.overwrite)
    cfg = load_config(args.config_file, args.opts, kind="any")
    text = format_config_lines(config_lines(cfg), changed_only=args.changed_only)
    if args.output:
        write_text(args.output, text)  # atomically
        print("Wrote {}".format(args.output))
    else:
        print(text, end="")
    return text


if __name__ == "__main__":
    run_cli(main)
