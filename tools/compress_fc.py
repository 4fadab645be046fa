#!/usr/bin/env python
"""Write a checkpoint whose fc6/fc7 are truncated SVDs (Fast R-CNN section 3.1) of a trained one.

Examples::

    # the paper's ranks: fc6 1024, fc7 256
    python tools/compress_fc.py output/shapes_demo/model_final.pth \\
        output/shapes_demo/model_final_svd.pth --ranks 1024 256
    # then load it with the same ranks (a model built with other ranks, or with the SVD off,
    # re-factorizes or multiplies the factors back when it loads the file)
    python tools/predict.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \\
        --weights output/shapes_demo/model_final_svd.pth --input photos/ --output out/ \\
        MODEL.ROI_BOX_HEAD.FC_SVD_RANKS "[1024, 256]"

The input is a detectron2 checkpoint (``{"model": state_dict, ...}``, as the trainer writes it)
or a plain state dict; each layer may hold a full weight or factors of an earlier compression.
Only the model's tensors are written (no optimizer or iteration), with the plugin's atomic
writer; the per-layer reconstruction error (relative Frobenius norm of ``W - U_k S_k V_k^T``)
is printed and stored in the file under "fc_svd". Doing the SVD once here saves it at every
load (fc6 of VGG16 takes seconds to tens of seconds on a CPU). A missing or corrupt input, a bad
rank, or an existing output without ``--overwrite`` ends with one ``error: ...`` paragraph and
exit status 2 (``--debug``: the traceback).
"""
import argparse
import os
from collections.abc import Mapping

import torch

from frcnn_plugin.cli import CheckpointError, add_debug_flag, int_in_range, run_cli
from frcnn_plugin.files import load_error_cause, require_file
from frcnn_plugin.modeling.fc_svd import compress_fc_state_dict
from frcnn_plugin.outputs import check_output_file
from frcnn_plugin.weights import save_checkpoint

LAYERS = ("roi_heads.box_head.fc6", "roi_heads.box_head.fc7")


def load_model_state(path):
    """The model's state dict from a detectron2 checkpoint or a plain state dict."""
    require_file(path, "Checkpoint", "allowed: a trained checkpoint, e.g. "
                 "OUTPUT_DIR/model_final.pth")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError("Cannot read checkpoint {}: it is corrupt, truncated or not a "
                              "PyTorch/detectron2 checkpoint ({})".format(
                                  path, load_error_cause(e))) from e
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise CheckpointError("{} holds a {}, not a state dict".format(path, type(obj).__name__))
    return dict(obj)


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", help="trained checkpoint (.pth)")
    parser.add_argument("output", help="compressed checkpoint to write (.pth)")
    parser.add_argument("--ranks", nargs=2, type=int_in_range(0, note=" (0: the layer kept whole)"),
                        default=[1024, 256], metavar=("FC6", "FC7"),
                        help="rank of fc6 and of fc7; 0 keeps a layer whole (default: the "
                             "paper's 1024 256)")
    parser.add_argument("--layers", nargs=2, default=list(LAYERS), metavar=("FC6", "FC7"),
                        help="the two layers' names in the state dict (default: {} {})".format(
                            *LAYERS))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_debug_flag(parser)
    return parser


def main(argv=None):
    args = argument_parser().parse_args(argv)
    check_output_file(args.output, "output", args.overwrite)  # before the work
    state = load_model_state(args.input)
    compressed, errors = compress_fc_state_dict(state, dict(zip(args.layers, args.ranks)))
    save_checkpoint(compressed, args.output, overwrite=args.overwrite,
                    source="truncated SVD of {}".format(os.path.basename(args.input)),
                    extra={"fc_svd": {"ranks": dict(zip(args.layers, args.ranks)),
                                      "errors": errors}})
    for layer, e in errors.items():
        print("{}: rank {} of {}, weights {:.2f}M -> {:.2f}M, relative Frobenius error {:.4f}, "
              "kept energy {:.2%}, SVD {:.1f} s".format(
                  layer, e["rank"], e["full_rank"], e["parameters"] / 1e6,
                  e["compressed_parameters"] / 1e6, e["relative_error"], e["kept_energy"],
                  e["seconds"]))
    print("Wrote {}. Load it with MODEL.WEIGHTS {} MODEL.ROI_BOX_HEAD.FC_SVD_RANKS \"[{}, {}]\""
          .format(args.output, args.output, *args.ranks))
    return errors


if __name__ == "__main__":
    run_cli(main)
