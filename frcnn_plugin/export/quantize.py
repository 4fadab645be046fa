"""int8 convolutions and fc layers on the CPU: ONNX Runtime's static quantization of an exported
ONNX model, calibrated on a few training images.

:func:`quantize_onnx_int8` takes the bytes of a ``tools/export_model.py --format onnx`` file and
returns those of the same detector with its ``Conv`` and ``Gemm`` nodes (VGG16's convolutions,
the RPN's, fc6/fc7 and the predictor; batch norm is already folded into the convolutions by
the export) quantized: ``onnxruntime.quantization.quantize_static`` in the QDQ format, weights
int8 per output channel, activations uint8 with ranges from MinMax calibration over the given
inputs. Everything else (anchors, NMS, RoI pooling, box decoding) stays float. The file keeps
the export's metadata, plus a ``quantization`` entry, so that ``tools/predict.py --backend
onnx`` and the benchmark run it as any exported file.

Why ONNX Runtime: it is the maintained int8 path for this exported graph on x86 CPUs (VNNI
kernels; ``torch.ao.quantization`` is deprecated; torchao's PT2E flow would need a
``torch.export`` of the whole detector, whose proposal selection and NMS have data-dependent
shapes, and was not tried), and it needs no code of the plugin's in the graph.
"""
import json
import os
import tempfile
from typing import Dict, Iterable, List, Sequence

import numpy as np

from ..errors import ConfigError
from .backends import onnx_feed
from .exporter import METADATA_KEY

__all__ = ["QUANT_OP_TYPES", "quantize_onnx_int8"]

QUANT_OP_TYPES = ("Conv", "Gemm")


def _require_quantization():
    try:
        from onnxruntime import quantization  # deferred: optional (frcnn_plugin[export])
    except ImportError:
        raise ConfigError("int8 quantization of an ONNX model needs onnxruntime, which is not "
                          "installed; allowed: pip install onnx onnxruntime (or "
                          "frcnn_plugin[export])")
    return quantization


def quantize_onnx_int8(data: bytes, calibration: Sequence[dict],
                       op_types: Iterable[str] = QUANT_OP_TYPES,
                       per_channel: bool = True) -> bytes:
    """The int8 model (see the module doc) of an exported ONNX model's bytes ``data``.

    Args:
        calibration: model inputs as the test-time mapper gives them (dicts with "image",
            "height", "width"), e.g. a few training images; at least one.
        op_types: the node types to quantize.
        per_channel: int8 weights per output channel (else per tensor).

    Returns:
        bytes: the quantized ONNX file, with the export metadata and its ``quantization``.
    """
    import onnx  # deferred: optional (frcnn_plugin[export])

    q = _require_quantization()
    calibration = list(calibration)
    if not calibration:
        raise ConfigError("int8 calibration needs at least one image; allowed: 1 or more")
    feeds: List[Dict[str, np.ndarray]] = [
        onnx_feed(x["image"], int(x.get("height", x["image"].shape[-2])),
                  int(x.get("width", x["image"].shape[-1]))) for x in calibration]

    class _Reader(q.CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    source = onnx.load_from_string(data)
    props = {p.key: p.value for p in source.metadata_props}
    metadata = json.loads(props.get(METADATA_KEY, "{}"))
    with tempfile.TemporaryDirectory(prefix="frcnn_int8_") as tmp:
        src, pre, out = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        with open(src, "wb") as f:
            f.write(data)
        # onnxruntime's recommended pre-processing (graph optimization, shape inference);
        # symbolic shape inference does not follow the detector's data-dependent shapes
        q.shape_inference.quant_pre_process(src, pre, skip_symbolic_shape=True)
        q.quantize_static(pre, out, _Reader(), quant_format=q.QuantFormat.QDQ,
                          per_channel=per_channel, activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, op_types_to_quantize=list(op_types),
                          calibrate_method=q.CalibrationMethod.MinMax)
        model = onnx.load(out)
    metadata["quantization"] = {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ", "weights": "int8 per channel" if per_channel else "int8 per tensor",
        "activations": "uint8", "calibration": "MinMax",
        "calibration_images": len(feeds), "op_types": list(op_types),
    }
    props[METADATA_KEY] = json.dumps(metadata, sort_keys=True)
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()
