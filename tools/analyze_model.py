#!/usr/bin/env python
"""What a detector costs: FLOPs, parameters, activations and its structure (detectron2's
``tools/analyze_model.py``, for YAML and Python configs).

    python tools/analyze_model.py --config-file configs/Base-VGG16-FRCNN.yaml --tasks flop \
        --image-size 600x1000
    python tools/analyze_model.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --tasks flop parameter activation -n 4 [--dataset frcnn_shapes_val] [KEY VALUE ...]
    python tools/analyze_model.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py \
        --tasks parameter structure

``--tasks``: ``flop`` (fvcore's operator table of the first input, then FLOPs per component:
backbone, RPN, RoI pooling, box head, box predictor, and the box head per proposal),
``parameter`` (fvcore's parameter table), ``activation`` (per operator), ``structure``
(``print(model)``). Inputs: ``--image-size HxW`` (a random image shown to the model at that
size) or the first ``-n`` images of ``--dataset`` (default: the config's first test data set)
through the test-time resize, averaged. ``--weights`` as in the inspection tools (the
proposals, and so the ROI heads' FLOPs, depend on them; default ``MODEL.WEIGHTS``). A user's
mistake ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
The logic is ``frcnn_plugin.analysis.model_cost``.
"""
import argparse
import logging

from frcnn_plugin.analysis.model_cost import (
    activation_counts,
    count_flops,
    parameter_table,
    synthetic_input,
)
from frcnn_plugin.cli import UserError, int_in_range, run_cli
from frcnn_plugin.inspection.cli import build_inspection_model, input_parser, setup_cfg
from frcnn_plugin.inspection.inputs import load_dataset_input

TASKS = ("flop", "parameter", "activation", "structure")
MAX_SIDE = 8192


def image_size(text):
    """``HxW`` (or one number for a square) -> (H, W), each in 1 ... MAX_SIDE."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        size = tuple(int(p) for p in parts) * (2 if len(parts) == 1 else 1)
    except ValueError:
        size = ()
    if len(size) != 2 or not all(1 <= s <= MAX_SIDE for s in size):
        raise argparse.ArgumentTypeError(
            "{!r}: allowed: HxW, e.g. 600x1000, each side 1 ... {}".format(text, MAX_SIDE))
    return size


def argument_parser():
    parser = input_parser(__doc__.split("\n")[0], image_input=False)
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=["flop"],
                        help="what to analyse (default: flop)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--image-size", type=image_size, metavar="HxW",
                     help="a random image of this size, shown to the model at that size")
    src.add_argument("--dataset", metavar="NAME",
                     help="a registered data set (default: the config's first test data set)")
    parser.add_argument("-n", "--num-inputs", type=int_in_range(1), default=1, metavar="N",
                        help="images of the data set to average over (default 1)")
    parser.add_argument("--max-depth", type=int_in_range(1), default=3,
                        help="depth of the module tables (default 3)")
    return parser


def model_inputs(cfg, args):
    if args.image_size:
        return [synthetic_input(*args.image_size, seed=i) for i in range(args.num_inputs)]
    name = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not name:
        raise UserError("The config has no test data set; allowed: --dataset NAME (a "
                        "registered data set) or --image-size HxW")
    return [load_dataset_input(cfg, name, i).inputs for i in range(args.num_inputs)]


def _g(flops):
    return "{:.3f}".format(flops / 1e9)


def format_components(report):
    lines = ["| component | GFLOPs | share |", "| --- | --- | --- |"]
    for name, flops in report.components().items():
        lines.append("| {} | {} | {:.1f} % |".format(
            name, _g(flops), 100.0 * flops / report.total if report.total else 0.0))
    return "\n".join(lines)


def main(argv=None):
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cfg = setup_cfg(args.config_file, args.opts, allow_lazy=True)
    tasks = list(dict.fromkeys(args.tasks))
    inputs = model_inputs(cfg, args) if {"flop", "activation"} & set(tasks) else []
    model, _ = build_inspection_model(cfg, args.weights)
    out = {}
    if inputs:
        h, w = inputs[0]["image"].shape[-2:]
        print("Input: {} ({} image(s); the first {}×{} as given to the model)".format(
            "random {}×{} image".format(h, w) if args.image_size else "data set images",
            len(inputs), h, w))
    for task in tasks:
        if task == "flop":
            report = count_flops(model, inputs)
            out["flop"] = report
            print("FLOPs by module and operator (fvcore, first input):\n" + report.table)
            print("FLOPs per component, mean of {} input(s) ({:.1f} proposals per image):".format(
                report.num_inputs, report.proposals))
            print(format_components(report))
            if report.proposals:
                print("box head per proposal: {:.4f} GFLOPs".format(report.per_roi() / 1e9))
            print("total: {} GFLOPs".format(_g(report.total)))
        elif task == "parameter":
            out["parameter"] = parameter_table(model, max_depth=args.max_depth)
            print("Parameters:\n" + out["parameter"])
        elif task == "activation":
            out["activation"] = activation_counts(model, inputs)
            print("Activations (millions of output elements) by operator:")
            for op, count in out["activation"].items():
                print("  {}: {:.3f}".format(op, count))
            print("  total: {:.3f}".format(sum(out["activation"].values())))
        elif task == "structure":
            out["structure"] = str(model)
            print("Model structure:\n" + out["structure"])
    return out


if __name__ == "__main__":
    run_cli(main)
