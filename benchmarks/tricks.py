"""The models of the inference variants (issue 13): the plugin, or its torchvision peer, with
the same trained weights run as fp32, channels-last, truncated-SVD fc6/fc7, int8 fc layers,
bf16 autocast (and combinations), or by a registered backend: ONNX Runtime (``onnx``: the fp32
model exported as ``tools/export_model.py`` does; ``onnx_int8``: that file with int8
convolutions and fc layers, as ``--int8-calibration`` writes it) and any backend registered with
:func:`register_variant`. The variants task (:mod:`.variants`) measures them; the train and
inference tasks give every peer the tricks of the plugin's config
(:func:`apply_config_tricks`).

A variant name is ``fp32`` or tricks joined by ``+``, in any order: ``channels_last``, ``svd``
(ranks from ``svd_ranks``), ``int8`` (fc6/fc7), ``bf16``; or a registered backend name. The
torchvision peer runs the same tricks where it can (all of them: its backbone is the plugin's VGG
module and its fc6/fc7 the plugin's ``VGGFCHead``); registered backends are the plugin's only.
"""
import importlib.util
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.modeling import build_model

from frcnn_plugin.engine.checkpoint import AtomicCheckpointer
from frcnn_plugin.export import calibration_inputs, exported_model
from frcnn_plugin.modeling.fc_svd import SVDLinear
from frcnn_plugin.modeling.memory_format import apply_channels_last
from frcnn_plugin.modeling.precision import apply_autocast, inference_precision, training_precision
from frcnn_plugin.modeling.quantize import (
    apply_bf16_autocast,
    prepare_for_inference,
    quantize_fc_int8,
)

from .peers import TORCHVISION_AMP_MODULES, build_torchvision_peer

__all__ = [
    "TRICKS",
    "VARIANT_BUILDERS",
    "INT8_CALIBRATION_IMAGES",
    "register_variant",
    "onnx_runtime_available",
    "parse_variant",
    "svd_ranks_for",
    "variant_config",
    "config_tricks",
    "apply_config_tricks",
    "build_variant",
]

TRICKS = ("channels_last", "svd", "int8", "bf16")
# name -> builder(cfg, weights_path, example) -> (model with detectron2's interface: list of
# dicts in, [{"instances": ...}] out, and a ``device`` attribute; info dict); ``example`` is one
# mapped input dict (to trace an export on). The hook for other backends (ONNX Runtime).
VARIANT_BUILDERS: Dict[str, Callable] = {}


def register_variant(name: str, builder: Callable):
    """Make ``name`` a variant of the plugin built by ``builder(cfg, weights_path, example)``;
    e.g. the ONNX Runtime backend: ``register_variant("onnx", build_onnx_runtime_model)``."""
    if name in TRICKS or name == "fp32" or "+" in name:
        raise ValueError("variant name {!r} is taken by the built-in tricks".format(name))
    VARIANT_BUILDERS[name] = builder


def _onnx_runtime_variant(cfg, weights: Optional[str], example: dict):
    """The ``onnx`` variant: the plugin's fp32 model with ``weights``, traced on ``example`` and
    exported as ``tools/export_model.py --format onnx`` does, run by ONNX Runtime (CPU)."""
    model, _ = build_variant(cfg, "plugin", "fp32", weights)
    return exported_model(cfg, model, example, "onnx"), {"backend": "onnxruntime"}


# training images the onnx_int8 variant calibrates on
INT8_CALIBRATION_IMAGES = 8


def _onnx_runtime_int8_variant(cfg, weights: Optional[str], example: dict):
    """The ``onnx_int8`` variant: the ``onnx`` variant's file with its convolutions and fc
    layers quantized to int8 by ONNX Runtime (static, calibrated on the first
    :data:`INT8_CALIBRATION_IMAGES` images of ``DATASETS.TRAIN[0]``), as
    ``tools/export_model.py --int8-calibration`` writes it. Untrained weights (``--synthetic``:
    latency only, no AP) are calibrated on ``example``, the timed image."""
    model, _ = build_variant(cfg, "plugin", "fp32", weights)
    if weights:
        calibration = calibration_inputs(cfg, INT8_CALIBRATION_IMAGES)
        source = cfg.DATASETS.TRAIN[0]
    else:
        calibration, source = [example], "the timed image (untrained weights: latency only)"
    return exported_model(cfg, model, example, "onnx", int8_calibration=calibration), {
        "backend": "onnxruntime int8", "calibration_images": len(calibration),
        "calibration_source": source}


register_variant("onnx", _onnx_runtime_variant)
register_variant("onnx_int8", _onnx_runtime_int8_variant)


def onnx_runtime_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def parse_variant(name: str) -> Tuple[str, ...]:
    """The tricks of a variant name, sorted (``()`` for fp32); a registered backend's name is
    returned as a 1-tuple ``(name,)``.

    Raises:
        ValueError: an unknown trick or backend.
    """
    if name in VARIANT_BUILDERS:
        return (name,)
    if name == "fp32":
        return ()
    tricks = name.split("+")
    bad = [t for t in tricks if t not in TRICKS]
    if bad or len(set(tricks)) != len(tricks):
        backends = ", ".join(VARIANT_BUILDERS) or "none"
        raise ValueError("variant {!r}; allowed: fp32, tricks joined by '+' ({}), or a "
                         "registered backend ({})".format(name, ", ".join(TRICKS), backends))
    return tuple(t for t in TRICKS if t in tricks)


def svd_ranks_for(cfg, ranks: Sequence[int]) -> List[int]:
    """``ranks`` clipped to the fc layers' sizes (the demo's fc7 is 512 -> 512)."""
    fc_dim = cfg.MODEL.ROI_BOX_HEAD.FC_DIM
    return [min(int(r), fc_dim) for r in ranks]


def variant_config(cfg, tricks: Sequence[str], svd_ranks: Sequence[int] = (1024, 256)):
    """A frozen copy of ``cfg`` with the keys of the plugin's tricks set."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.CHANNELS_LAST = "channels_last" in tricks
    cfg.MODEL.ROI_BOX_HEAD.FC_SVD_RANKS = (svd_ranks_for(cfg, svd_ranks) if "svd" in tricks
                                           else [0, 0])
    cfg.MODEL.ROI_BOX_HEAD.FC_INT8 = "int8" in tricks
    cfg.MODEL.BF16_AUTOCAST = False  # deprecated: TEST.AMP
    cfg.TEST.AMP.ENABLED = "bf16" in tricks
    cfg.TEST.AMP.PRECISION = "bf16"
    cfg.freeze()
    return cfg


def _torchvision_tricks(peer, tricks, svd_ranks, factorize: bool = True):
    """The tricks on the torchvision peer (after its weights are loaded); ``factorize`` False:
    SVD layers of the right shapes with their own random initialization."""
    tv = peer.model
    if "channels_last" in tricks:
        apply_channels_last(tv, paths=("backbone", "rpn.head"), input_module="backbone")
    if "svd" in tricks:
        head = tv.roi_heads.box_head
        for name, rank in zip(("fc6", "fc7"), svd_ranks):
            fc = getattr(head, name)
            if rank and factorize:
                setattr(head, name, SVDLinear.from_linear(fc, rank, name=name))
            elif rank:
                setattr(head, name, SVDLinear(fc.in_features, fc.out_features, rank, name=name)
                        .to(fc.weight.device))
    if "int8" in tricks:
        quantize_fc_int8(peer, paths=("model.roi_heads.box_head",))
    if "bf16" in tricks:
        apply_bf16_autocast(peer, paths=TORCHVISION_AMP_MODULES)


def config_tricks(cfg, inference: bool = True) -> Tuple[str, ...]:
    """The tricks a config's keys turn on (``MODEL.CHANNELS_LAST``, ``FC_SVD_RANKS``,
    ``FC_INT8``; ``bf16``: the resolved ``TEST.AMP`` for ``inference``, else ``SOLVER.AMP``)."""
    box = cfg.MODEL.ROI_BOX_HEAD
    dtype = inference_precision(cfg) if inference else training_precision(cfg)
    on = {"channels_last": cfg.MODEL.get("CHANNELS_LAST", False),
          "svd": any(box.get("FC_SVD_RANKS", (0, 0))), "int8": box.get("FC_INT8", False),
          "bf16": dtype is torch.bfloat16}
    return tuple(t for t in TRICKS if on[t])


def apply_config_tricks(cfg, kind: str, model: nn.Module, inference: bool) -> List[str]:
    """Give a peer of the train / inference tasks the tricks of the plugin's config, so that
    the ratios compare like with like: channels-last (every kind, training too; the plugin has
    it from its meta-architecture), and for inference int8 and bf16 (the plugin and the d2 peer
    through :func:`~frcnn_plugin.modeling.quantize.prepare_for_inference`, torchvision on its
    own modules). The SVD is structural: the d2 peer is built with the ranks (same box head);
    torchvision's fc6/fc7 are factorized here. Returns the tricks applied."""
    tricks = config_tricks(cfg, inference)
    if not tricks:
        return []
    train_bf16 = not inference and "bf16" in tricks  # SOLVER.AMP: bf16 training, every model
    if kind == "torchvision":
        ranks = list(cfg.MODEL.ROI_BOX_HEAD.FC_SVD_RANKS)
        if inference:
            model.eval()
        _torchvision_tricks(model, tricks if inference else
                            tuple(t for t in tricks if t in ("channels_last", "svd")), ranks)
        if train_bf16:
            apply_autocast(model, train_dtype=torch.bfloat16, paths=TORCHVISION_AMP_MODULES)
    else:
        if kind != "plugin" and "channels_last" in tricks:
            apply_channels_last(model)
        if inference:
            prepare_for_inference(cfg, model.eval())
        elif train_bf16:
            apply_autocast(model, train_dtype=torch.bfloat16)
    return list(tricks) if inference else [t for t in tricks if t in ("channels_last", "svd",
                                                                      "bf16")]


def build_variant(cfg, kind: str, variant: str, weights: Optional[str],
                  svd_ranks: Sequence[int] = (1024, 256),
                  example: Optional[dict] = None) -> Tuple[nn.Module, dict]:
    """Build ``kind`` ("plugin" or "torchvision") as ``variant`` with the trained ``weights``
    (a checkpoint file: the plugin's through its checkpointer, so that SVD ranks are applied at
    load; torchvision's a ``{"model": state_dict}``), in eval mode. ``weights`` None: the
    seeded random initialization, SVD factors included (latency only: the SVD of an untrained
    VGG16 fc6 costs minutes on a busy CPU and changes no timing).

    Returns:
        (model, info)
    """
    tricks = parse_variant(variant)
    info = {"kind": kind, "variant": variant,
            "weights": os.path.basename(weights) if weights else "untrained (seeded)"}
    if tricks and tricks[0] in VARIANT_BUILDERS:
        if kind != "plugin":
            raise ValueError("backend {!r} is the plugin's only".format(variant))
        model, more = VARIANT_BUILDERS[tricks[0]](cfg, weights, example)
        info.update(more or {})
        return model, info
    ranks = svd_ranks_for(cfg, svd_ranks)
    if kind == "plugin":
        vcfg = variant_config(cfg, tricks, ranks)
        torch.manual_seed(0)
        model = build_model(vcfg)
        if weights:
            AtomicCheckpointer(model).load(weights)
        model = prepare_for_inference(vcfg, model.eval())
    elif kind == "torchvision":
        torch.manual_seed(0)
        model = build_torchvision_peer(cfg).to(torch.device(cfg.MODEL.DEVICE))
        if weights:
            state = torch.load(weights, map_location=cfg.MODEL.DEVICE, weights_only=True)
            model.load_state_dict(state["model"])
        model.eval()
        _torchvision_tricks(model, tricks, ranks, factorize=bool(weights))
    else:
        raise ValueError("model kind {!r}; allowed: plugin, torchvision".format(kind))
    info["class"] = "{}.{}".format(type(model).__module__, type(model).__name__)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    if "svd" in tricks:
        info["svd_ranks"] = ranks
    return model, info
