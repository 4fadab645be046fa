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

``source="caffe"`` takes the Caffe VGG16 (the original py-faster-rcnn ImageNet model) as PyTorch
state dicts come: with torchvision's keys (``vgg16_caffe.pth`` of the well-known PyTorch
reimplementations) or with Caffe's layer names (``conv1_1.weight`` ... ``fc6.weight``, from
Caffe-to-PyTorch converters). The renaming is the same; those weights expect **BGR** input in
0..255 minus py-faster-rcnn's means with std 1 (:data:`CAFFE_INPUT`, set by
``configs/vgg16_frcnn_caffe.yaml`` and ``configs/vgg16_frcnn_voc_caffe.yaml``).
"""

import os
import re
from collections import OrderedDict

import torch

from .errors import CheckpointError, OutputError
from .files import atomic_write, load_error_cause, require_file
from .outputs import check_output_file
from .modeling.backbone.vgg import VGG_BLOCKS

__all__ = [
    "SOURCES",
    "CAFFE_INPUT",
    "convert_torchvision_vgg",
    "convert_vgg_weights",
    "load_state_dict_file",
    "save_checkpoint",
]

# Where VGG weights come from, and the input each expects (the config keys that must match).
SOURCES = ("torchvision", "caffe")
TORCHVISION_INPUT = {
    "INPUT.FORMAT": "RGB",
    "MODEL.PIXEL_MEAN": [123.675, 116.28, 103.53],
    "MODEL.PIXEL_STD": [58.395, 57.12, 57.375],
}
# py-faster-rcnn's PIXEL_MEANS (BGR, 0..255), no scaling
CAFFE_INPUT = {
    "INPUT.FORMAT": "BGR",
    "MODEL.PIXEL_MEAN": [102.9801, 115.9465, 122.7717],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
}

_FEATURE_KEY = re.compile(
    r"^features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)
_FC_NAMES = {"classifier.0": "roi_heads.box_head.fc6", "classifier.3": "roi_heads.box_head.fc7"}
_CAFFE_KEY = re.compile(r"^(conv\d_\d|fc[678])\.(weight|bias)$")
_CONV_COUNT_TO_DEPTH = {sum(v): k for k, v in VGG_BLOCKS.items()}


def conv_names(depth):
    """``["conv1_1", "conv1_2", "conv2_1", ...]`` for a VGG depth."""
    return [
        "conv{}_{}".format(b + 1, j + 1) for b, n in enumerate(VGG_BLOCKS[depth]) for j in range(n)
    ]


def load_state_dict_file(path):
    """Load a state dict saved with ``torch.save``; clear errors for missing or corrupt files."""
    require_file(path, "VGG weights file", "allowed: torchvision's or Caffe's VGG .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            "Cannot read {} as a PyTorch state dict ({}); is it a complete download of "
            "torchvision's VGG weights?".format(path, load_error_cause(e))
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


def _caffe_names_to_torchvision(state_dict):
    """Caffe layer names (``conv<b>_<j>.*``, ``fc6/fc7/fc8.*``) -> torchvision's VGG keys
    (``features.<i>.*`` in the order of the layers, ``classifier.{0,3,6}.*``)."""
    unexpected = [k for k in state_dict if not _CAFFE_KEY.match(k)]
    if unexpected:
        raise CheckpointError(
            "Unexpected key {!r} among Caffe layer names; allowed: conv<b>_<j>.weight/bias and "
            "fc6/fc7/fc8.weight/bias".format(unexpected[0])
        )
    convs = sorted(
        {k.split(".")[0] for k in state_dict if k.startswith("conv")},
        key=lambda n: tuple(int(v) for v in n[4:].split("_")),
    )
    out = OrderedDict()
    for i, name in enumerate(convs):
        for param in ("weight", "bias"):
            key = "{}.{}".format(name, param)
            if key in state_dict:
                out["features.{}.{}".format(2 * i, param)] = state_dict[key]
    for fc, index in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        for param in ("weight", "bias"):
            key = "{}.{}".format(fc, param)
            if key in state_dict:
                out["classifier.{}.{}".format(index, param)] = state_dict[key]
    return out


def convert_vgg_weights(state_dict, source="torchvision", include_fc=True):
    """Rename VGG ImageNet weights from ``source`` to the plugin's parameter names.

    Args:
        state_dict (dict[str, Tensor]): torchvision's ``vgg*`` state dict, or (``source``
            "caffe") the Caffe VGG16 with torchvision's keys or with Caffe's layer names.
        source (str): one of :data:`SOURCES`.
        include_fc (bool): also convert fc6/fc7.

    Returns:
        (OrderedDict, dict): the renamed state dict, and ``{"depth", "norm", "input"}``: the
        backbone it fits and the input keys it expects (``INPUT.FORMAT``, ``MODEL.PIXEL_MEAN``,
        ``MODEL.PIXEL_STD``).
    """
    if source not in SOURCES:
        raise CheckpointError("source={!r}; allowed: {}".format(source, ", ".join(SOURCES)))
    caffe_names = any(_CAFFE_KEY.match(k) for k in state_dict)
    if caffe_names and source != "caffe":
        raise CheckpointError(
            "The file has Caffe layer names (e.g. conv1_1.weight), not torchvision's keys; "
            "if it is the Caffe VGG16, pass --source caffe"
        )
    if caffe_names:
        state_dict = _caffe_names_to_torchvision(state_dict)
    out, info = convert_torchvision_vgg(state_dict, include_fc=include_fc)
    if source == "caffe" and info["norm"]:
        raise CheckpointError("The Caffe VGG has no batch norms, but the file has some")
    info["input"] = dict(CAFFE_INPUT if source == "caffe" else TORCHVISION_INPUT)
    return out, info


def save_checkpoint(model_state, path, overwrite=False, source="torchvision", extra=None):
    """Write ``{"model": model_state}`` as a detectron2 checkpoint with the plugin's atomic
    writer (temporary file, fsync, rename), refusing to replace an existing file unless
    ``overwrite``; ``source`` (where the weights come from) is recorded as its author, and the
    entries of the dict ``extra`` are added beside "model"."""
    check_output_file(path, "output", overwrite)
    checkpoint = {
        "model": model_state,
        "__author__": "{}, converted by frcnn_plugin".format(source),
        "matching_heuristics": False,
    }
    checkpoint.update(extra or {})
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, lambda f: torch.save(checkpoint, f))
    except OSError as e:
        raise OutputError(e.errno, "Cannot write {} ({}); choose another output path".format(
            path, e.strerror or e)) from e
