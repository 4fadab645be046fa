#!/usr/bin/env python
"""Convert ImageNet VGG weights (torchvision's or Caffe's) into a detectron2 checkpoint.

Examples::

    # torchvision's file (download it yourself, e.g. with torchvision.models.vgg16(weights=...))
    python tools/convert_vgg_weights.py ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth \
        weights/vgg16_imagenet_d2.pth
    # the Caffe VGG16 as PyTorch reimplementations ship it (torchvision's keys or Caffe's
    # layer names); it wants BGR input with Caffe's means: configs/vgg16_frcnn_caffe.yaml
    python tools/convert_vgg_weights.py vgg16_caffe.pth weights/vgg16_caffe_d2.pth --source caffe

The checkpoint holds ``backbone.conv*`` and ``roi_heads.box_head.fc6/fc7``; load it with
``MODEL.WEIGHTS``. The RPN and the box predictor start from scratch (detectron2 logs them as
missing keys). A missing, corrupt or non-VGG input, or an existing output without
``--overwrite``, ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the
traceback); an existing output is never replaced by a failed conversion.
"""
import argparse

from frcnn_plugin.cli import add_debug_flag, run_cli
from frcnn_plugin.outputs import check_output_file
from frcnn_plugin.weights import SOURCES, convert_vgg_weights, load_state_dict_file, save_checkpoint


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="VGG state dict (.pth), torchvision's or Caffe's")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument("--source", choices=SOURCES, default="torchvision",
                        help="where the weights come from (default: torchvision; caffe: BGR input)")
    parser.add_argument("--backbone-only", action="store_true", help="skip fc6/fc7")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    check_output_file(args.output, "output", args.overwrite)  # before any work
    state = load_state_dict_file(args.input)
    model_state, info = convert_vgg_weights(
        state, source=args.source, include_fc=not args.backbone_only
    )
    save_checkpoint(model_state, args.output, overwrite=args.overwrite, source=args.source)
    keys = " ".join(
        "{} {}".format(k, "'{}'".format(v) if isinstance(v, str) else str(v).replace(" ", ""))
        for k, v in info["input"].items()
    )
    print(
        "Wrote {} tensors to {}. Use it with MODEL.WEIGHTS {} MODEL.VGG.DEPTH {} "
        "MODEL.VGG.NORM '{}' and the input these weights expect: {}".format(
            len(model_state), args.output, args.output, info["depth"], info["norm"], keys
        )
    )


if __name__ == "__main__":
    run_cli(main)
