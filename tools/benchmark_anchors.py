#!/usr/bin/env python
"""Time per call of FRCNNAnchorGenerator against detectron2's DefaultAnchorGenerator.

Both generators are built from the same YAML (only ``MODEL.ANCHOR_GENERATOR.NAME`` differs, and
for DefaultAnchorGenerator the plugin's scales are turned into the equivalent explicit SIZES),
checked to give identical anchors, then called repeatedly on feature maps of one size, as in
training with a fixed input size:

* the paper preset (configs/vgg16_frcnn_paper_anchors.yaml): one 50x50 map (800x800 image);
* the RetinaNet preset (configs/retinanet_R50_FPN_octave_anchors.yaml): P3-P7 of an 800x1333
  image (100x167, 50x84, 25x42, 13x21, 7x11).

Example::

    python tools/benchmark_anchors.py --iters 200 --device cpu

A bad flag (``--iters 0``, ``--device gpu``, ``--device cuda`` without a GPU) ends with one
``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
"""
import argparse
import math
import os
import time
import warnings

import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_anchor_generator

from frcnn_plugin.cli import UserError, add_debug_flag, load_config, run_cli
import frcnn_plugin.modeling.anchor_generator  # noqa: F401  (registers FRCNNAnchorGenerator)

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
PRESETS = {
    "paper 50x50": ("vgg16_frcnn_paper_anchors.yaml", [16], (800, 800)),
    "retinanet 800x1333": ("retinanet_R50_FPN_octave_anchors.yaml", [8, 16, 32, 64, 128],
                           (800, 1333)),
}


def build_pair(config, strides):
    """(DefaultAnchorGenerator, FRCNNAnchorGenerator) giving the same anchors."""
    # MODEL.DEVICE plays no part: the generators run on the features' device (--device)
    cfg = load_config(os.path.join(CONFIGS, config), device="cpu").clone()
    cfg.defrost()
    shapes = [ShapeSpec(channels=1, stride=s) for s in strides]
    ours = build_anchor_generator(cfg, shapes)
    cfg.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = ours.sizes
    return build_anchor_generator(cfg, shapes), ours


def time_per_call(gen, features, iters, device):
    gen(features)  # warm-up (and, for the plugin, fills the cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = math.inf
    for _ in range(5):  # best of 5 rounds
        start = time.perf_counter()
        for _ in range(iters):
            gen(features)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / iters)
    return best


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("{!r}: allowed: an integer >= 1".format(text))
    return value


def get_device(name):
    """``torch.device(name)``, checked to exist here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError("--device {!r} is not a device; allowed: cpu, cuda, cuda:N".format(name))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device {!r}: no CUDA device here; allowed: cpu".format(name))
    if device.type not in ("cpu", "cuda"):
        raise UserError("--device {!r}: allowed: cpu, cuda, cuda:N".format(name))
    return device


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=positive_int, default=100, help="calls per timing round")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    device = get_device(args.device)
    warnings.filterwarnings("ignore", message="torch.meshgrid")
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"{args.iters} calls x best of 5")
    print(f"{'preset':<20} {'anchors':>9} {'Default':>12} {'FRCNN':>12} {'FRCNN no cache':>15}"
          f" {'speed-up':>9}")
    for name, (config, strides, (h, w)) in PRESETS.items():
        default, ours = build_pair(config, strides)
        default.to(device)
        ours.to(device)
        features = [
            torch.zeros(1, 1, math.ceil(h / s), math.ceil(w / s), device=device) for s in strides
        ]
        for a, b in zip(default(features), ours(features)):
            assert torch.equal(a.tensor, b.tensor), "the generators disagree"
        num = sum(len(b) for b in ours(features))
        t_default = time_per_call(default, features, args.iters, device)
        t_ours = time_per_call(ours, features, args.iters, device)
        ours.cache_size = 0
        t_nocache = time_per_call(ours, features, args.iters, device)
        print(f"{name:<20} {num:>9} {t_default * 1e6:>9.1f} us {t_ours * 1e6:>9.1f} us "
              f"{t_nocache * 1e6:>12.1f} us {t_default / t_ours:>8.1f}x")


if __name__ == "__main__":
    run_cli(main)
