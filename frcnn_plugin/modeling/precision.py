"""Mixed precision for training and inference: ``SOLVER.AMP`` and ``TEST.AMP``.

Keys (YAML configs; a Python config: ``train.amp.enabled`` / ``train.amp.precision``):

* ``SOLVER.AMP.ENABLED`` (detectron2's key): train in mixed precision;
* ``SOLVER.AMP.PRECISION``: ``"bf16"``, ``"fp16"`` or ``"auto"``;
* ``TEST.AMP.ENABLED`` / ``TEST.AMP.PRECISION``: the same for inference (evaluation,
  ``tools/predict.py``, the benchmark's variants). ``MODEL.BF16_AUTOCAST True``, the key of the
  previous release, still works as ``TEST.AMP.ENABLED True`` + ``TEST.AMP.PRECISION bf16``,
  with a deprecation warning.

``"auto"`` resolves where the model runs (:func:`resolve_precision`), logged with the reason:
on a CPU, bf16 where the CPU computes it natively (``amx_bf16`` or ``avx512_bf16`` among its
flags), else mixed precision stays **off** (float32): without those instructions oneDNN
emulates bf16 and the convolutions run several times slower (docs/precision.md has the
figures); on CUDA, bf16 where the GPU supports it, else fp16.

How the model runs (one mechanism for both builds of detectron2 and for the YAML and the
LazyConfig trainers; no copy of ``run_step``):

* bf16 (CPU or CUDA), training and inference: :func:`apply_autocast` runs the modules that do
  the arithmetic -- the backbone, the RPN head, the box head and the box predictor -- under
  ``torch.autocast`` and casts their outputs back to float32, through forward hooks (so the
  model's ``state_dict``, checkpoints, ``deepcopy`` and DistributedDataParallel are untouched).
  Everything between them stays float32: anchors, matching, the losses, box decoding, NMS and
  RoI pooling (torchvision's ``roi_pool`` has no CPU autocast rule). The weights, the gradients
  and the optimizer state stay float32 ("master weights"); bf16 has float32's exponent range,
  so no loss scaling is needed, and detectron2's ``SimpleTrainer.run_step`` is the step.
* fp16 training on CUDA: detectron2's own ``AMPTrainer`` (float16 autocast around the whole
  forward pass, ``GradScaler``), as ``SOLVER.AMP.ENABLED`` gives in detectron2. fp16 on a CPU
  is refused (no fast fp16 CPU kernels; use bf16).

Channels-last: bf16 convolutions on CPU pay only in ``channels_last`` (measured: NCHW bf16
keeps half of the gain on an AMX CPU, and is ~100x slower than fp32 on a CPU without native
bf16); a warning says so when ``MODEL.CHANNELS_LAST`` is off.
"""
import logging
import os
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .memory_format import submodules_at

__all__ = [
    "AMP_MODULES",
    "apply_precision",
    "PRECISIONS",
    "cpu_bf16_capability",
    "float32_region",
    "resolve_precision",
    "apply_autocast",
    "autocast_dtypes",
    "training_precision",
    "inference_precision",
    "lazy_training_precision",
    "to_float32",
    "uses_amp_trainer",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# the modules of a detectron2 GeneralizedRCNN that run under autocast (missing ones skipped)
AMP_MODULES = ("backbone", "proposal_generator.rpn_head", "roi_heads.box_head",
               "roi_heads.box_predictor")
# CPU flags (Linux /proc/cpuinfo names) of native bf16 arithmetic
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
_logged = set()


def _cpu_flags(path="/proc/cpuinfo") -> Optional[set]:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def cpu_bf16_capability() -> Tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and why (for the start-up log).

    True where the CPU flags include ``amx_bf16`` (AMX tiles) or ``avx512_bf16`` (bf16 dot
    products); ``FRCNN_CPU_BF16=1``/``0`` overrides the probe (e.g. a CPU whose flags this
    probe cannot read)."""
    forced = os.environ.get("FRCNN_CPU_BF16", "")
    if forced in ("0", "1"):
        return forced == "1", "FRCNN_CPU_BF16={}".format(forced)
    flags = _cpu_flags()
    if flags is None:
        return False, "the CPU flags could not be read (set FRCNN_CPU_BF16=1 to force bf16)"
    have = [f for f in BF16_CPU_FLAGS if f in flags]
    if have:
        return True, "the CPU has {}".format(" and ".join(have))
    return False, "the CPU has neither {} (bf16 would be emulated, several times slower)".format(
        " nor ".join(BF16_CPU_FLAGS))


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(precision: str, device, *, key="SOLVER.AMP.PRECISION"
                      ) -> Tuple[Optional[torch.dtype], str]:
    """The autocast dtype for ``precision`` on ``device``: ``torch.bfloat16``,
    ``torch.float16``, or ``None`` (float32), with the reason.

    Raises:
        ConfigError: an unknown value, or fp16 on a CPU.
    """
    if precision not in PRECISIONS:
        raise ConfigError("{}={!r}; allowed: {}".format(key, precision, ", ".join(
            repr(p) for p in PRECISIONS)))
    device_type = torch.device(device).type
    if precision == "fp16" and device_type == "cpu":
        raise ConfigError("{}='fp16' on the CPU; allowed there: 'bf16' or 'auto' (PyTorch has "
                          "no fast float16 CPU kernels)".format(key))
    if precision != "auto":
        return _DTYPES[precision], "{} {}".format(key, precision)
    if device_type == "cpu":
        fast, why = cpu_bf16_capability()
        return (torch.bfloat16 if fast else None), "{} auto: {} on the CPU: {}".format(
            key, "bf16" if fast else "float32", why)
    if device_type == "cuda":
        bf16 = _cuda_bf16()
        return (torch.bfloat16 if bf16 else torch.float16), "{} auto: {} ({})".format(
            key, "bf16" if bf16 else "fp16",
            "the GPU supports bf16" if bf16 else "the GPU has no bf16 support")
    return None, "{} auto: float32 on {}".format(key, device_type)


def _log_once(message, *args, level=logging.INFO):
    text = message % args
    if text not in _logged:
        _logged.add(text)
        logger.log(level, text)


def _section(cfg, name):
    try:
        return cfg[name].get("AMP", None)
    except (AttributeError, KeyError, TypeError):
        return None


def _warn_channels_last(cfg, dtype, device):
    if dtype is torch.bfloat16 and torch.device(device).type == "cpu" and not cfg.MODEL.get(
            "CHANNELS_LAST", False):
        _log_once("bf16 on the CPU with MODEL.CHANNELS_LAST False: bf16 convolutions pay only "
                  "in channels_last (set MODEL.CHANNELS_LAST True)", level=logging.WARNING)


def training_precision(cfg) -> Optional[torch.dtype]:
    """The training autocast dtype of a YAML config (``SOLVER.AMP``), resolved and logged;
    ``None``: float32."""
    amp = _section(cfg, "SOLVER")
    if amp is None or not amp.get("ENABLED", False):
        return None
    dtype, why = resolve_precision(amp.get("PRECISION", "auto"), cfg.MODEL.DEVICE)
    _log_once("training precision: %s (%s)", _name(dtype), why)
    _warn_channels_last(cfg, dtype, cfg.MODEL.DEVICE)
    return dtype


def inference_precision(cfg) -> Optional[torch.dtype]:
    """The inference autocast dtype of a YAML config (``TEST.AMP``; the deprecated
    ``MODEL.BF16_AUTOCAST True`` counts as ``TEST.AMP.ENABLED True``, ``PRECISION bf16``),
    resolved and logged; ``None``: float32. A Python config: ``None``."""
    try:
        legacy = bool(cfg.MODEL.get("BF16_AUTOCAST", False))
    except (AttributeError, KeyError):
        return None
    amp = _section(cfg, "TEST")
    enabled = bool(amp is not None and amp.get("ENABLED", False))
    if legacy:
        _log_once("MODEL.BF16_AUTOCAST is deprecated and will be removed in the next release; "
                  "use TEST.AMP.ENABLED True with TEST.AMP.PRECISION bf16",
                  level=logging.WARNING)
        if not enabled:
            dtype, why = torch.bfloat16, "MODEL.BF16_AUTOCAST True (deprecated)"
            _log_once("inference precision: bf16 (%s)", why)
            return dtype
    if not enabled:
        return None
    dtype, why = resolve_precision(amp.get("PRECISION", "auto"), cfg.MODEL.DEVICE,
                                   key="TEST.AMP.PRECISION")
    _log_once("inference precision: %s (%s)", _name(dtype), why)
    _warn_channels_last(cfg, dtype, cfg.MODEL.DEVICE)
    return dtype


def _name(dtype):
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "float32"}[dtype]


def to_float32(x):
    """``x`` with every floating-point tensor (in dicts, lists and tuples) cast to float32."""
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, dict):
        return type(x)((k, to_float32(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(to_float32(v) for v in x)
    return x


def _device_type(module):
    p = next(iter(module.parameters()), None)
    return p.device.type if p is not None else "cpu"


def _pre_hook(module, args):
    dtype = module._frcnn_amp[0 if module.training else 1]
    ctx = torch.autocast(_device_type(module), dtype=dtype, enabled=dtype is not None)
    ctx.__enter__()
    module._frcnn_amp_ctx.append(ctx)


def _post_hook(module, args, output):
    if module._frcnn_amp_ctx:
        module._frcnn_amp_ctx.pop().__exit__(None, None, None)
    dtype = module._frcnn_amp[0 if module.training else 1]
    return to_float32(output) if dtype is not None else output


def _register_hooks(module, pre_hook, post_hook):
    """``pre_hook`` before ``module``'s forward pass and ``post_hook`` after it, also when the
    forward pass raises (``always_call``), so that an autocast region opened by ``pre_hook`` is
    always closed."""
    module.register_forward_pre_hook(pre_hook)
    try:
        module.register_forward_hook(post_hook, always_call=True)
    except TypeError:  # pragma: no cover - torch < 2.0
        module.register_forward_hook(post_hook)


def apply_autocast(model: nn.Module, train_dtype: Optional[torch.dtype] = None,
                   test_dtype: Optional[torch.dtype] = None,
                   paths=AMP_MODULES) -> List[str]:
    """Run the modules at ``paths`` of ``model`` (missing ones skipped) under ``torch.autocast``
    with ``train_dtype`` in training mode and ``test_dtype`` in eval mode (``None``: float32),
    their floating-point outputs cast back to float32, in place (module doc). Calling it again
    updates the dtypes (``None`` leaves that mode's dtype as it was set before). Returns the
    paths done."""
    done = []
    for path, module in submodules_at(model, paths):
        if not hasattr(module, "_frcnn_amp"):
            module._frcnn_amp = [None, None]
            module._frcnn_amp_ctx = []
            _register_hooks(module, _pre_hook, _post_hook)
        if train_dtype is not None:
            module._frcnn_amp[0] = train_dtype
        if test_dtype is not None:
            module._frcnn_amp[1] = test_dtype
        done.append(path)
    return done


def autocast_dtypes(module: nn.Module) -> Tuple[Optional[torch.dtype], Optional[torch.dtype]]:
    """(training dtype, inference dtype) that :func:`apply_autocast` set on ``module``."""
    return tuple(getattr(module, "_frcnn_amp", (None, None)))


def uses_amp_trainer(dtype, device) -> bool:
    """True where training runs in detectron2's ``AMPTrainer``: fp16 on CUDA (module doc)."""
    return dtype is torch.float16 and torch.device(device).type == "cuda"


def apply_precision(cfg, model: nn.Module) -> nn.Module:
    """The autocast a YAML config asks for (``SOLVER.AMP`` in training mode, ``TEST.AMP`` in
    eval mode), applied to ``model`` in place by :func:`apply_autocast`; fp16 training on CUDA
    is left to detectron2's ``AMPTrainer``. Returns ``model``."""
    train = training_precision(cfg)
    if uses_amp_trainer(train, cfg.MODEL.DEVICE):
        train = None
    test = inference_precision(cfg)
    if train is not None or test is not None:
        apply_autocast(model, train, test)
    return model


def lazy_training_precision(train) -> Optional[torch.dtype]:
    """The training autocast dtype of a Python config's ``train`` node: ``train.amp.enabled``
    (detectron2's model zoo key) with ``train.amp.precision`` (default ``"auto"``), resolved
    for ``train.device`` and logged; ``None``: float32."""
    amp = train.get("amp", None) or {}
    enabled = amp.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError("train.amp.enabled={!r}; allowed: True or False".format(enabled))
    if not enabled:
        return None
    dtype, why = resolve_precision(amp.get("precision", "auto"), train.device,
                                   key="train.amp.precision")
    _log_once("training precision: %s (%s)", _name(dtype), why)
    return dtype


def _fp32_pre_hook(module, args):
    ctx = torch.autocast(_device_type_of(args), enabled=False)
    ctx.__enter__()
    module._frcnn_fp32_ctx.append(ctx)
    return to_float32(args)


def _fp32_post_hook(module, args, output):
    if module._frcnn_fp32_ctx:
        module._frcnn_fp32_ctx.pop().__exit__(None, None, None)
    return output


def _device_type_of(args):
    for x in args:
        if torch.is_tensor(x):
            return x.device.type
        if isinstance(x, (list, tuple)) and x and torch.is_tensor(x[0]):
            return x[0].device.type
    return "cpu"


def float32_region(module: nn.Module) -> nn.Module:
    """Run ``module`` in float32 even inside an autocast region: autocast off for its forward
    pass and its floating-point tensor inputs cast to float32 (for ops with no bf16/fp16 kernel,
    e.g. torchvision's CPU ``roi_pool``: the RoI pooler of the plugin's ROI heads). In place,
    idempotent; returns ``module``."""
    if not hasattr(module, "_frcnn_fp32_ctx"):
        module._frcnn_fp32_ctx = []
        _register_hooks(module, _fp32_pre_hook, _fp32_post_hook)
    return module
