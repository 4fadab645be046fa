"""int8 CPU inference of the fully connected layers: dynamic quantization of fc6/fc7 (and of
the box predictor if asked), ``MODEL.ROI_BOX_HEAD.FC_INT8``.

Dynamic quantization stores each ``nn.Linear``'s weight in int8 (per-tensor scale) and
quantizes the activations on the fly, per batch: no calibration data, and the RoI features
(the input of fc6) keep their float range. It applies to an eval-mode model after its
checkpoint is loaded (:func:`prepare_for_inference`); the quantized model cannot be trained.
With ``FC_SVD_RANKS`` on, the two factors of each SVD layer are quantized.

Why ``torch.ao.quantization.quantize_dynamic``, which torch marks deprecated (it points to
torchao's ``quantize_`` API): it is the path that runs int8 GEMMs on CPU (fbgemm/oneDNN) in
eager mode with nothing more installed; torchao is a separate package, not a dependency of this
project, and its int8 dynamic-activation path targets ``torch.compile``. The deprecation
warnings are silenced here, by message, only around the call, and the choice is logged once;
when ``quantize_dynamic`` is gone :func:`quantize_fc_int8` fails with a clear error.
"""
import logging
import warnings
from typing import List

import torch
from torch import nn

from ..errors import ConfigError
from .memory_format import submodules_at
from .precision import AMP_MODULES, apply_autocast, inference_precision

__all__ = ["quantize_fc_int8", "apply_bf16_autocast", "prepare_for_inference", "INT8_MODULES",
           "BF16_MODULES"]

logger = logging.getLogger(__name__)

# modules of a detectron2 GeneralizedRCNN quantized by quantize_fc_int8
INT8_MODULES = ("roi_heads.box_head",)
PREDICTOR = "roi_heads.box_predictor"
_DEPRECATION_MESSAGES = (
    r"torch\.ao\.quantization is deprecated",
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor",
)
_logged = []


def _quantize_dynamic():
    try:  # a probe, here: a later torch may drop it (only FC_INT8 needs it)
        from torch.ao.quantization import quantize_dynamic
    except ImportError as e:  # pragma: no cover - a future torch
        raise ConfigError(
            "MODEL.ROI_BOX_HEAD.FC_INT8=True needs torch.ao.quantization.quantize_dynamic, which "
            "this torch ({}) no longer has; allowed: FC_INT8 False".format(torch.__version__)
        ) from e
    return quantize_dynamic


def quantize_fc_int8(model: nn.Module, paths=INT8_MODULES, predictor: bool = False) -> List[str]:
    """Replace the ``nn.Linear`` layers under ``paths`` (and the box predictor with
    ``predictor``) of an eval-mode CPU ``model`` by dynamically quantized int8 ones, in place.

    Returns:
        list[str]: the names of the quantized layers.

    Raises:
        ConfigError: the model is in training mode or not on the CPU.
    """
    if model.training:
        raise ConfigError("MODEL.ROI_BOX_HEAD.FC_INT8=True applies to inference only; call "
                          "model.eval() first (training with it is not allowed)")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ConfigError("MODEL.ROI_BOX_HEAD.FC_INT8=True runs on the CPU only; the model is "
                          "on {} (MODEL.DEVICE)".format(device))
    quantize_dynamic = _quantize_dynamic()
    if not _logged:
        logger.info("int8 fc layers through torch.ao.quantization.quantize_dynamic (deprecated "
                    "by torch in favour of torchao, which is not a dependency here; see "
                    "frcnn_plugin.modeling.quantize)")
        _logged.append(True)
    names = []
    paths = tuple(paths) + ((PREDICTOR,) if predictor else ())
    for path, module in submodules_at(model, paths):  # looked up one by one, as replaced
        linears = [n for n, m in module.named_modules() if type(m) is nn.Linear]
        if not linears:
            continue
        with warnings.catch_warnings():
            for message in _DEPRECATION_MESSAGES:
                warnings.filterwarnings("ignore", message=message)
            quantized = quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, name, quantized)
        names += ["{}.{}".format(path, n) for n in linears]
    return names


# modules of a detectron2 GeneralizedRCNN run under bfloat16 autocast by apply_bf16_autocast
BF16_MODULES = AMP_MODULES


def apply_bf16_autocast(model: nn.Module, paths=BF16_MODULES) -> List[str]:
    """Run the modules at ``paths`` (missing ones are skipped) under bfloat16 autocast in eval
    mode, their outputs back to float32 (:func:`~frcnn_plugin.modeling.precision.
    apply_autocast` with an inference dtype of bf16); everything between them (anchors, NMS,
    RoI pooling) float32. Idempotent. Returns the paths done."""
    return apply_autocast(model, test_dtype=torch.bfloat16, paths=paths)


def prepare_for_inference(cfg, model: nn.Module) -> nn.Module:
    """The inference-only transforms a config asks for, applied to a loaded model in eval mode:
    ``MODEL.ROI_BOX_HEAD.FC_INT8`` (int8 fc6/fc7, and the predictor with
    ``FC_INT8_PREDICTOR``) and the inference precision ``TEST.AMP`` (or the deprecated
    ``MODEL.BF16_AUTOCAST``). Returns ``model`` (changed in place).
    A config without these keys (e.g. a Python LazyConfig) changes nothing."""
    try:
        box = cfg.MODEL.ROI_BOX_HEAD
    except (AttributeError, KeyError):
        return model
    if box.get("FC_INT8", False):
        names = quantize_fc_int8(model, predictor=box.get("FC_INT8_PREDICTOR", False))
        logger.info("int8 (dynamic quantization): %s", ", ".join(names) or "no layer")
    dtype = inference_precision(cfg)
    if dtype is not None:
        names = apply_autocast(model, test_dtype=dtype)
        logger.info("%s autocast: %s", "bfloat16" if dtype is torch.bfloat16 else "float16",
                    ", ".join(names))
    return model
