#!/usr/bin/env python
"""Speed, memory and accuracy of the plugin next to torchvision's FasterRCNN and detectron2's
built-in RPN + StandardROIHeads, at identical settings read from one config.

Tasks:
  train      training iterations per second (forward, backward, SGD step), per-stage breakdown
  inference  latency per image (batch 1): median and p90, per-stage breakdown
  data       throughput of build_detection_train_loader with the config's DatasetMapper
  accuracy   train each model with the same data and schedule, COCO AP on DATASETS.TEST[0]
  variants   train the plugin once (or --weights), then AP/AP50 on DATASETS.TEST[0] and latency
             of each inference variant (fp32, channels_last, svd, int8, bf16, combinations
             joined by +; onnx, onnx_int8: ONNX Runtime fp32 and int8; registered backends),
             as ratios to fp32 and to torchvision's fp32
             (torchvision runs the trained weights converted, with the same tricks)
  scaling    how cost grows: time, time outside the network and peak memory per image against
             the short side (--sizes), the test proposals (--proposals) and, in training, the
             GT boxes per image (--gt-boxes), on synthetic images; a table per sweep, --plot PNG

Every model is measured in its own fresh process (peak RSS on CPU, CUDA max allocated on GPU),
with the same inputs, threads and batch size; warm-up iterations are not timed; the timed
rounds are interleaved across models (order rotated each round). Ratios are plugin / peer from
the same run. A table goes to stdout, everything to --json. Options come before the trailing
KEY VALUE config overrides. Examples::

  python tools/benchmark.py --config-file configs/vgg16_frcnn.yaml --task train \\
      --synthetic coco --image-size 600x1000 --iters 3 --warmup 1 --repeats 3 \\
      --json output/bench_train.json SOLVER.IMS_PER_BATCH 1
  python tools/benchmark.py --config-file configs/vgg16_frcnn.yaml --task inference \\
      --dataset coco_2017_val --iters 5 --repeats 3
  python tools/benchmark.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \\
      --task accuracy --peers torchvision SOLVER.MAX_ITER 300 SOLVER.STEPS "(240,)"
  python tools/benchmark.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \\
      --task variants --peers torchvision --svd-ranks 256,64 --iters 8 --repeats 3
  python tools/benchmark.py --config-file configs/vgg16_frcnn.yaml --task scaling \
      --peers torchvision --iters 1 --repeats 3 --plot output/scaling.png
"""
import argparse
import json
import logging
import math
import os
import sys

from frcnn_plugin.cli import add_debug_flag, int_in_range, run_cli
from frcnn_plugin.outputs import check_output_file, write_text

# The benchmark lab (benchmarks/, beside tools/) is not installed with frcnn_plugin: import it
# from this checkout, whatever the current folder.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from benchmarks import TASKS, BenchmarkOptions, format_report, run_benchmark  # noqa: E402
from benchmarks.suite import BenchmarkOptionError  # noqa: E402
from benchmarks.tricks import parse_variant  # noqa: E402

# the benchmark's own user errors (besides frcnn_plugin.cli.UserError, e.g. a missing data set):
# bad options
USER_ERRORS = (BenchmarkOptionError,)


def image_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected HxW, e.g. 600x1000, got {!r}".format(text))
    return h, w


PEERS = ("torchvision", "d2", "none")
BACKENDS = ("eager", "torchscript", "onnx")  # frcnn_plugin.export.BACKENDS, without its import


def choice_list(what, allowed):
    """An argparse type: a comma-separated, non-empty list of ``allowed`` values."""
    def parse(text):
        values = [v for v in text.split(",") if v]
        if not values or any(v not in allowed for v in values):
            raise argparse.ArgumentTypeError("invalid {} {!r}; allowed: a comma-separated list "
                                             "of {}".format(what, text, ", ".join(allowed)))
        return values
    return parse


peer_list = choice_list("peers", PEERS)
backend_list = choice_list("backends", BACKENDS)


def variant_list(text):
    variants = [v for v in text.split(",") if v]
    try:
        for v in variants:
            parse_variant(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    if not variants:
        raise argparse.ArgumentTypeError("no variant in {!r}".format(text))
    return variants


def rank_pair(text):
    try:
        ranks = [int(v) for v in text.split(",")]
    except ValueError:
        ranks = []
    if len(ranks) != 2 or min(ranks) < 0:
        raise argparse.ArgumentTypeError("expected FC6,FC7 ranks >= 0, e.g. 1024,256, got "
                                         "{!r}".format(text))
    return ranks


def positive_ints(what):
    """An argparse type: a comma-separated list of integers >= 1, or "none" (empty list)."""
    def parse(text):
        if text == "none":
            return []
        try:
            values = [int(v) for v in text.split(",") if v]
        except ValueError:
            values = []
        if not values or min(values) < 1:
            raise argparse.ArgumentTypeError(
                "invalid {} {!r}; allowed: comma-separated integers >= 1 (e.g. 300,600,1000), "
                "or none".format(what, text))
        return values
    return parse


def argument_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--config-file", required=True, help="the plugin config (YAML)")
    p.add_argument("--task", choices=TASKS, default="train")
    p.add_argument("--iters", type=int_in_range(1), default=3, help="timed iterations per round")
    p.add_argument("--warmup", type=int_in_range(0), default=1, help="untimed iterations first")
    p.add_argument("--repeats", type=int_in_range(1), default=3, help="timed rounds")
    p.add_argument("--peers", type=peer_list, default=["torchvision", "d2"],
                   help="comma-separated models to compare with: torchvision, d2, or none "
                        "(default torchvision,d2)")
    p.add_argument("--backend", type=backend_list, default=["eager"],
                   help="--task inference: comma-separated eager, torchscript, onnx; the plugin "
                        "model is also timed as traced by tools/export_model.py and run by "
                        "each (rows plugin-torchscript, plugin-onnx; CPU; default eager)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int_in_range(0, note=" (0: PyTorch's default)"), default=0,
                   help="torch intra-op threads for every model (default: torch's default)")
    p.add_argument("--synthetic", choices=("coco",), default=None,
                   help="generated COCO-shaped images (sizes, ~7 boxes, 80 classes)")
    p.add_argument("--image-size", type=image_size, default=None,
                   help="with --synthetic: one fixed original size HxW, e.g. 600x1000")
    p.add_argument("--dataset", default=None,
                   help="registered data set (default: the config's DATASETS.TRAIN[0], "
                        "DATASETS.TEST[0] for inference), e.g. coco_2017_val")
    p.add_argument("--num-images", type=int_in_range(1), default=16,
                   help="distinct input images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action="store_true",
                   help="mixed precision on CUDA (float16 autocast + GradScaler); bf16 (CPU or "
                        "GPU): the keys SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION bf16 "
                        "(train task) or TEST.AMP.* (inference), applied to every model")
    p.add_argument("--variants", type=variant_list, default=None,
                   help="variants task: comma-separated variants (default: fp32, channels_last, "
                        "svd, int8, svd+int8, channels_last+svd+int8, bf16, channels_last+bf16, and onnx, onnx_int8 "
                        "(ONNX Runtime fp32 and int8) when installed)")
    p.add_argument("--svd-ranks", type=rank_pair, default=[1024, 256], metavar="FC6,FC7",
                   help="variants task: ranks of the svd trick (default 1024,256; clipped to "
                        "MODEL.ROI_BOX_HEAD.FC_DIM)")
    p.add_argument("--weights", default=None,
                   help="variants task: trained plugin checkpoint (default: train the plugin "
                        "first with the config's schedule)")
    p.add_argument("--sizes", type=positive_ints("--sizes"), default=[300, 450, 600, 800, 1000],
                   help="scaling task: short sides of the size sweep (long side 5/3 of it; "
                        "default 300,450,600,800,1000; none: skip)")
    p.add_argument("--proposals", type=positive_ints("--proposals"),
                   default=[100, 300, 1000, 2000],
                   help="scaling task: MODEL.RPN.POST_NMS_TOPK_TEST values at the base size "
                        "(--image-size, default 600x1000; default 100,300,1000,2000; none: skip)")
    p.add_argument("--gt-boxes", type=positive_ints("--gt-boxes"), default=[1, 10, 50, 100],
                   help="scaling task: GT boxes per image of the training sweep at the base "
                        "size (default 1,10,50,100; none: skip)")
    p.add_argument("--plot", default=None,
                   help="scaling task: write a PNG of time and peak memory against each sweep")
    p.add_argument("--no-isolate", action="store_true",
                   help="measure in this process (peak memory is then not per model)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --json / --plot file")
    add_debug_flag(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


def json_ready(x):
    """NaN / inf (e.g. COCO's AP of an absent size class) as null: strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    return x


def main(argv=None):
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.image_size and not args.synthetic and args.task != "scaling":
        parser.error("--image-size needs --synthetic coco (or --task scaling: its base size)")
    if args.plot and args.task != "scaling":
        parser.error("--plot is for --task scaling")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path:  # before any work
            check_output_file(path, flag, args.overwrite)
    logging.basicConfig(level=logging.WARNING)
    options = BenchmarkOptions(
        task=args.task, iters=args.iters, warmup=args.warmup, repeats=args.repeats,
        peers=args.peers, device=args.device, threads=args.threads, synthetic=args.synthetic,
        dataset=args.dataset, image_size=args.image_size, num_images=args.num_images,
        seed=args.seed, amp=args.amp, isolate=not args.no_isolate,
        config_file=args.config_file, overrides=args.opts, backends=args.backend,
        variants=args.variants, svd_ranks=args.svd_ranks, weights=args.weights,
        sizes=args.sizes, proposals=args.proposals, gt_boxes=args.gt_boxes, plot=args.plot)
    results = run_benchmark(options)
    print(format_report(results), flush=True)
    if args.json:
        write_text(args.json, json.dumps(json_ready(results), indent=1, allow_nan=False))
        print("results: {}".format(args.json))
    return results


if __name__ == "__main__":
    run_cli(main, user_errors=USER_ERRORS)
