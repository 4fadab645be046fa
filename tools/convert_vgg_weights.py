#!/usr/bin/env python
"""Convert torchvision's ImageNet VGG weights into a detectron2 checkpoint for frcnn_plugin.

Example::

    # torchvision's file (download it yourself, e.g. with torchvision.models.vgg16(weights=...))
    python tools/convert_vgg_weights.py ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth \
        weights/vgg16_imagenet_d2.pth

The checkpoint holds ``backbone.conv*`` and ``roi_heads.box_head.fc6/fc7``; load it with
``MODEL.WEIGHTS``. The RPN and the box predictor start from scratch (detectron2 logs them as
missing keys).
"""
import argparse
import sys

from frcnn_plugin.weights import convert_torchvision_vgg, load_state_dict_file, save_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("input", help="torchvision VGG state dict (.pth)")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument("--backbone-only", action="store_true", help="skip fc6/fc7")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    try:
        state = load_state_dict_file(args.input)
        model_state, info = convert_torchvision_vgg(state, include_fc=not args.backbone_only)
        save_checkpoint(model_state, args.output, overwrite=args.overwrite)
    except (OSError, ValueError) as e:
        sys.exit("convert_vgg_weights: {}".format(e))
    print(
        "Wrote {} tensors to {}. Use it with MODEL.WEIGHTS {} MODEL.VGG.DEPTH {} "
        "MODEL.VGG.NORM '{}'".format(
            len(model_state), args.output, args.output, info["depth"], info["norm"]
        )
    )


if __name__ == "__main__":
    main()
