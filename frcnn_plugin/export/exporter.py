"""TorchScript and ONNX files of a built detector, by tracing (``tools/export_model.py``).

The exported model is the detector's whole test-time forward for **one** image, wrapped by
detectron2's :class:`TracingAdapter`: inputs ``height`` and ``width`` (int64 scalars, the
original image's size) and ``image`` (float32 (C, H, W), already resized by the test-time
``ResizeShortestEdge`` and in ``INPUT.FORMAT``: pixel normalization is inside); outputs
``boxes`` ((N, 4) XYXY in original-image pixels), ``scores`` ((N,)) and ``classes`` ((N,)
int64), as the eager model's ``instances`` after detectron2's ``detector_postprocess``.

The input size is traced, not frozen (the anchors, the clipping and the minimum proposal size
follow the input), so images of other sizes run too; the batch size is 1. Each file carries the
metadata of :data:`METADATA_KEY` (the input settings, the input and output names), which
:mod:`frcnn_plugin.export.backends` reads.
"""
import importlib
import inspect
import io
import json
import warnings
from typing import Dict, List, Tuple

import torch

import detectron2

from ..errors import ConfigError
from .d2_export import TracingAdapter

__all__ = [
    "EXPORT_METHODS",
    "FORMATS",
    "FILE_NAMES",
    "ONNX_OPSET",
    "INPUT_NAMES",
    "OUTPUT_NAMES",
    "METADATA_KEY",
    "check_exportable",
    "export_metadata",
    "trace_adapter",
    "export_bytes",
    "quiet_deprecations",
]

EXPORT_METHODS = ("tracing", "scripting")
FORMATS = ("torchscript", "onnx")
# "onnx_int8": the int8 twin of model.onnx (export_model --int8-calibration), an ONNX file
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx", "onnx_int8": "model_int8.onnx"}
# ONNX opset of torch.onnx's TorchScript-based exporter (dynamo=False): 16+ has RoIAlign with
# aligned=True (ROIAlignV2); torchvision registers nms, roi_align and roi_pool for it.
ONNX_OPSET = 17
# TracingAdapter flattens the input dict by sorted keys: height, image, width.
INPUT_NAMES = ("height", "image", "width")
OUTPUT_NAMES = ("boxes", "scores", "classes")
METADATA_KEY = "frcnn_export"
METADATA_VERSION = 1


def check_exportable(cfg, method: str, fmt: str):
    """Refuse what cannot be exported, before any work.

    Raises:
        ConfigError: an unknown method or format; scripting (the VGG backbone and the plugin's
            RPN are plain Python that TorchScript cannot compile: they pick layers by name and
            format their error messages); Soft-NMS (its loop runs as often as the data asks,
            which a trace cannot record).
    """
    if method not in EXPORT_METHODS:
        raise ConfigError("--export-method {!r}; allowed: {}".format(method, ", ".join(
            EXPORT_METHODS)))
    if fmt not in FORMATS:
        raise ConfigError("--format {!r}; allowed: {}".format(fmt, ", ".join(FORMATS)))
    if fmt == "onnx":
        missing = [name for name in ("onnx", "onnxruntime") if not _importable(name)]
        if missing:
            raise ConfigError(
                "--format onnx needs {} (the file's metadata, the check in onnxruntime), not "
                "installed; allowed: pip install onnx onnxruntime (or frcnn_plugin[export]), or "
                "--format torchscript".format(" and ".join(missing)))
    if method == "scripting":
        raise ConfigError(
            "--export-method scripting is not supported: TorchScript cannot compile the VGG "
            "backbone (layers looked up by name) nor FRCNNRPN/FRCNNGeneralizedRCNN (Python "
            "checks with formatted messages, attributes added to ImageList); allowed: "
            "--export-method tracing (TorchScript or ONNX, any input size)")
    if cfg.MODEL.ROI_HEADS.get("SOFT_NMS", None) and cfg.MODEL.ROI_HEADS.SOFT_NMS.METHOD != "none":
        raise ConfigError(
            "MODEL.ROI_HEADS.SOFT_NMS.METHOD={!r} cannot be exported: Soft-NMS loops as often as "
            "the data asks, which a trace cannot record; allowed: MODEL.ROI_HEADS.SOFT_NMS."
            "METHOD none (hard NMS) for the exported model".format(
                cfg.MODEL.ROI_HEADS.SOFT_NMS.METHOD))


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def export_metadata(cfg, method: str, fmt: str, sample_size: Tuple[int, int]) -> Dict:
    """What a backend needs to feed the exported model as the eager one is fed."""
    return {
        "version": METADATA_VERSION,
        "method": method,
        "format": fmt,
        "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "batch_size": 1,
        "traced_input_size": [int(sample_size[0]), int(sample_size[1])],
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
        "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
        "num_classes": int(cfg.MODEL.ROI_HEADS.NUM_CLASSES),
        "score_thresh_test": float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST),
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
    }


def _inference(model, batched_inputs: List[Dict[str, torch.Tensor]]):
    """The model's own test-time forward (with detector_postprocess), as three tensors."""
    instances = model(batched_inputs)[0]["instances"]
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def trace_adapter(model, sample: Dict) -> TracingAdapter:
    """detectron2's TracingAdapter of ``model`` (in eval mode) for one input dict ``sample``
    (``image``, ``height``, ``width``); its ``flattened_inputs`` are in :data:`INPUT_NAMES`
    order."""
    inputs = {
        "image": sample["image"],
        "height": torch.as_tensor(int(sample["height"]), dtype=torch.int64),
        "width": torch.as_tensor(int(sample["width"]), dtype=torch.int64),
    }
    adapter = TracingAdapter(model.eval(), ([inputs],), _inference).eval()
    assert adapter.flattened_inputs[1] is inputs["image"], "unexpected input order"
    return adapter


def export_bytes(adapter: TracingAdapter, fmt: str, metadata: Dict) -> bytes:
    """The traced model as the bytes of a TorchScript (``torch.jit.save``) or ONNX file, with
    ``metadata`` inside (TorchScript: extra file ``frcnn_export.json``; ONNX: metadata_props
    ``frcnn_export``)."""
    text = json.dumps(metadata, sort_keys=True)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's warnings about Python values in detectron2's code (asserts, len()):
        # the check against the eager model on the sample images is what counts
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # the indices here come from masks, sorts and NMS, never negative
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced "
                                "indexing", category=UserWarning)
        quiet_deprecations()
        if fmt == "torchscript":
            traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
            torch.jit.save(traced, buffer, _extra_files={METADATA_KEY + ".json": text})
            return buffer.getvalue()
        # the TorchScript-based exporter; torch >= 2.9 defaults to the dynamo one
        kwargs = {"dynamo": False} if "dynamo" in _onnx_export_parameters() else {}
        torch.onnx.export(
            adapter, adapter.flattened_inputs, buffer, opset_version=ONNX_OPSET,
            input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            dynamic_axes={"image": {1: "height", 2: "width"}, **{
                name: {0: "detections"} for name in OUTPUT_NAMES}},
            **kwargs)
    adapter.eval()  # torch.onnx.export restores the mode it found; keep eval for sure
    import onnx  # deferred: optional (frcnn_plugin[export])

    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: text})
    return proto.SerializeToString()


def quiet_deprecations():
    """Inside ``warnings.catch_warnings()``: hide torch's deprecation notices of
    ``torch.jit.trace`` / ``save`` / ``load`` and of the TorchScript-based ONNX exporter.
    These are the export paths used and checked here (``torch.export`` and the dynamo-based
    ONNX exporter are not); the README states it."""
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated",
                            category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX",
                            category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="The feature will be removed",  # its logging
                            category=DeprecationWarning, module=r"torch\.onnx")


def _onnx_export_parameters():
    return inspect.signature(torch.onnx.export).parameters
