#!/usr/bin/env python
"""Convert torchvision's ImageNet VGG weights into a detectron2 checkpoint for frcnn_plugin.

Example::

    # torchvision's file (download it yourself, e.g. with torchvision.models.vgg16(weights=...))
    python tools/convert_vgg_weights.py ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth \
        weights/vgg16_imagenet_d2.pth

The checkpoint holds ``backbone.conv*`` and ``roi_heads.box_head.fc6/fc7``; load it with
``MODEL.WEIGHTS``. The RPN and the box predictor start from scratch (detectron2 logs them as
missing keys). A missing, corrupt or non-VGG input, or an existing output without
``--overwrite``, ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the
traceback); an existing output is never replaced by a failed conversion.
"""
import argparse

from frcnn_plugin.cli import add_debug_flag, run_cli
from frcnn_plugin.weights import convert_torchvision_vgg, load_state_dict_file, save_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("input", help="torchvision VGG state dict (.pth)")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument("--backbone-only", action="store_true", help="skip fc6/fc7")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    state = load_state_dict_file(args.input)
    model_state, info = convert_torchvision_vgg(state, include_fc=not args.backbone_only)
    save_checkpoint(model_state, args.output, overwrite=args.overwrite)
    print(
        "Wrote {} tensors to {}. Use it with MODEL.WEIGHTS {} MODEL.VGG.DEPTH {} "
        "MODEL.VGG.NORM '{}'".format(
            len(model_state), args.output, args.output, info["depth"], info["norm"]
        )
    )


if __name__ == "__main__":
    run_cli(main)
