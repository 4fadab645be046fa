"""Convert torchvision's ImageNet VGG state dicts into detectron2 checkpoints for the plugin.

torchvision publishes ``vgg16-397923af.pth`` (and ``vgg16_bn-6c64b313.pth`` etc.): a plain state
dict with ``features.<i>.*`` (convolutions, and batch norms in the ``_bn`` variants) and
``classifier.{0,3,6}.*`` (fc6, fc7, fc8). The plugin's VGG backbone names its convolutions
``conv1_1`` ... ``conv5_3`` and its box head ``fc6``/``fc7``, so the conversion is a renaming:

==========================  ==========================================
torchvision                 detectron2 model (GeneralizedRCNN)
==========================  ==========================================
``features.<i>`` (k-th conv)  ``backbone.conv<b>_<j>.{weight,bias}``
``features.<i>`` (BN)         ``backbone.conv<b>_<j>.norm.*``
``classifier.0`` (fc6)        ``roi_heads.box_head.fc6.*``
``classifier.3`` (fc7)        ``roi_heads.box_head.fc7.*``
``classifier.6`` (fc8)        dropped (ImageNet's 1000 classes)
==========================  ==========================================

The weights expect RGB input normalized by ImageNet's mean and std, which the plugin's configs
set (``INPUT.FORMAT: RGB``, ``MODEL.PIXEL_MEAN``/``PIXEL_STD``).
"""

import os
import re
from collections import OrderedDict

import torch

from .cli import CheckpointError, MissingFileError, OutputError, OutputExistsError
from .files import atomic_write
from .modeling.backbone.vgg import VGG_BLOCKS

__all__ = ["convert_torchvision_vgg", "load_state_dict_file", "save_checkpoint"]

_FEATURE_KEY = re.compile(
    r"^features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)
_FC_NAMES = {"classifier.0": "roi_heads.box_head.fc6", "classifier.3": "roi_heads.box_head.fc7"}
_CONV_COUNT_TO_DEPTH = {sum(v): k for k, v in VGG_BLOCKS.items()}


def conv_names(depth):
    """``["conv1_1", "conv1_2", "conv2_1", ...]`` for a VGG depth."""
    return [
        "conv{}_{}".format(b + 1, j + 1) for b, n in enumerate(VGG_BLOCKS[depth]) for j in range(n)
    ]


def load_state_dict_file(path):
    """Load a state dict saved with ``torch.save``; clear errors for missing or corrupt files."""
    if not os.path.isfile(path):
        raise MissingFileError("VGG weights file not found: {}".format(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            "Cannot read {} as a PyTorch state dict ({}: {}); is it a complete download of "
            "torchvision's VGG weights?".format(path, type(e).__name__, e)
        ) from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError("{} holds a {}, not a state dict".format(path, type(obj).__name__))
    return obj


def convert_torchvision_vgg(state_dict, include_fc=True):
    """Rename a torchvision VGG state dict to the plugin's parameter names.

    Raises:
        CheckpointError: (a ``ValueError``) ``state_dict`` is not a torchvision VGG's.

    Args:
        state_dict (dict[str, Tensor]): torchvision's ``vgg{11,13,16,19}[_bn]`` state dict.
        include_fc (bool): also convert fc6/fc7 (``classifier.0``/``classifier.3``).

    Returns:
        (OrderedDict, dict): the renamed state dict, and ``{"depth": int, "norm": "" | "BN"}``
        describing the backbone it fits (``MODEL.VGG.DEPTH`` / ``MODEL.VGG.NORM``).
    """
    layers = OrderedDict()  # features index -> {param name: tensor}
    for key, value in state_dict.items():
        m = _FEATURE_KEY.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
        elif not key.startswith("classifier."):
            raise CheckpointError(
                "Unexpected key {!r}: not a torchvision VGG state dict (expected features.<i>.* "
                "and classifier.<i>.* keys)".format(key)
            )
    convs = [i for i in sorted(layers) if layers[i].get("weight", torch.empty(0)).dim() == 4]
    if len(convs) not in _CONV_COUNT_TO_DEPTH:
        raise CheckpointError(
            "Found {} convolutions in features.*; a torchvision VGG has {} (VGG{})".format(
                len(convs), sorted(_CONV_COUNT_TO_DEPTH), sorted(VGG_BLOCKS)
            )
        )
    depth = _CONV_COUNT_TO_DEPTH[len(convs)]
    norms = [i for i in sorted(layers) if "running_mean" in layers[i]]
    if norms and len(norms) != len(convs):
        raise CheckpointError(
            "Found {} convolutions but {} batch norms".format(len(convs), len(norms))
        )

    out = OrderedDict()
    for k, (name, conv_idx) in enumerate(zip(conv_names(depth), convs)):
        for param, tensor in layers[conv_idx].items():
            out["backbone.{}.{}".format(name, param)] = tensor
        if norms:
            if norms[k] != conv_idx + 1:
                raise CheckpointError(
                    "features.{} is not followed by its batch norm".format(conv_idx)
                )
            for param, tensor in layers[norms[k]].items():
                out["backbone.{}.norm.{}".format(name, param)] = tensor
    if include_fc:
        for src, dst in _FC_NAMES.items():
            for param in ("weight", "bias"):
                key = "{}.{}".format(src, param)
                if key not in state_dict:
                    raise CheckpointError(
                        "Missing {} (VGG's fc6/fc7); pass include_fc=False (--backbone-only) "
                        "to convert the backbone only".format(key)
                    )
                out["{}.{}".format(dst, param)] = state_dict[key]
    return out, {"depth": depth, "norm": "BN" if norms else ""}


def save_checkpoint(model_state, path, overwrite=False):
    """Write ``{"model": model_state}`` as a detectron2 checkpoint with the plugin's atomic
    writer (temporary file, fsync, rename), refusing to replace an existing file unless
    ``overwrite``."""
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError("{} exists; pass --overwrite to replace it".format(path))
    checkpoint = {
        "model": model_state,
        "__author__": "torchvision, converted by frcnn_plugin",
        "matching_heuristics": False,
    }
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, lambda f: torch.save(checkpoint, f))
    except OSError as e:
        raise OutputError(e.errno, "Cannot write {} ({}); choose another output path".format(
            path, e.strerror or e)) from e
