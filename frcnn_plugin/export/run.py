"""Export a detector and check the file against the eager model (``tools/export_model.py``).

:func:`export_model` traces the model on the first sample image, serializes it (TorchScript or
ONNX), loads those very bytes back (``torch.jit.load`` / onnxruntime on the CPU), runs them on
every sample image and compares with the eager model's outputs (:mod:`.check`); the file is
written atomically only when every sample agrees within the tolerances (or when asked to
keep it anyway).
"""
import os
import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.structures import pairwise_iou

from ..data import FRCNNDatasetMapper
from ..data.checks import load_dataset_dicts
from ..errors import ConfigError, OutputExistsError, UserError
from ..files import atomic_write
from ..predict.predictor import BatchPredictor
from .backends import load_exported
from .check import (BOX_ATOL, SCORE_ATOL, Comparison, compare_instances, comparison_table,
                    text_table)
from .exporter import FILE_NAMES, check_exportable, export_bytes, export_metadata, trace_adapter
from .quantize import quantize_onnx_int8

__all__ = ["ExportCheckError", "ExportReport", "output_path", "export_model", "exported_model",
           "calibration_inputs", "export_int8"]


class ExportCheckError(UserError):
    """The exported model's outputs differ from the eager model's beyond the tolerances."""


class ExportReport(NamedTuple):
    path: str
    written: bool
    rows: List[Comparison]
    table: str
    metadata: dict
    seconds: float


def output_path(output_dir: str, fmt: str, overwrite: bool = False) -> str:
    """``<output_dir>/model.ts`` or ``model.onnx``; an existing file is refused unless
    ``overwrite``.

    Raises:
        OutputExistsError: the file exists and ``overwrite`` is False.
    """
    path = os.path.join(output_dir, FILE_NAMES[fmt])
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(
            "{} exists already; allowed: --overwrite to replace it, or another --output "
            "folder".format(path))
    return path


def export_model(cfg, model, samples: Sequence[Tuple[str, np.ndarray]], method: str, fmt: str,
                 path: str, box_atol: float = BOX_ATOL, score_atol: float = SCORE_ATOL,
                 keep_on_mismatch: bool = False) -> ExportReport:
    """Export ``model`` (built from ``cfg``, on the CPU) to ``path`` and check it.

    Args:
        samples: (name, HWC uint8 image in ``cfg.INPUT.FORMAT``); the first is traced, all are
            compared.
        method, fmt: "tracing"; "torchscript" or "onnx".
        keep_on_mismatch (bool): write the file even if the check fails.

    Raises:
        ConfigError: what :func:`~frcnn_plugin.export.exporter.check_exportable` refuses.
        ExportCheckError: the check failed (the file is then not written, unless
            ``keep_on_mismatch``); its message holds the table.
    """
    check_exportable(cfg, method, fmt)
    start = time.perf_counter()
    predictor = BatchPredictor(cfg, model)
    inputs = [predictor.inputs(image) for _, image in samples]
    with torch.no_grad():
        expected = [model([x])[0]["instances"].to("cpu") for x in inputs]
    metadata = export_metadata(cfg, method, fmt, tuple(inputs[0]["image"].shape[-2:]))
    data = export_bytes(trace_adapter(model, inputs[0]), fmt, metadata)
    model.eval()
    exported = load_exported(path, fmt, data=data)
    rows = [compare_instances(name, ref, exported([x])[0]["instances"])
            for (name, _), x, ref in zip(samples, inputs, expected)]
    table = comparison_table(rows, fmt, box_atol, score_atol)
    ok = all(r.ok(box_atol, score_atol) for r in rows)
    if ok or keep_on_mismatch:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        atomic_write(path, lambda f: f.write(data))
    report = ExportReport(path, ok or keep_on_mismatch, rows, table, metadata,
                          time.perf_counter() - start)
    if not ok and not keep_on_mismatch:
        raise ExportCheckError(
            "The exported model differs from the eager model beyond the tolerances (boxes "
            "{:g} px, scores {:g}); {} not written:\n{}\nallowed: --keep-on-mismatch to write "
            "it anyway, or larger --box-atol / --score-atol".format(
                box_atol, score_atol, path, table))
    return report


def exported_model(cfg, model, sample: dict, fmt: str, method: str = "tracing",
                   int8_calibration: Optional[Sequence[dict]] = None):
    """``model`` traced on one input dict (``image``, ``height``, ``width``) and loaded back
    from its bytes as an :class:`~frcnn_plugin.export.backends.ExportedModel` (no file, no
    check), e.g. to time a backend (``tools/benchmark.py --backend``). With
    ``int8_calibration`` (input dicts; ONNX only) the file is first quantized to int8
    (:func:`~frcnn_plugin.export.quantize.quantize_onnx_int8`)."""
    check_exportable(cfg, method, fmt)
    if int8_calibration is not None and fmt != "onnx":
        raise ConfigError("int8 quantization is for --format onnx; allowed: onnx")
    sample = dict(sample, image=sample["image"].float().cpu())
    sample.setdefault("height", sample["image"].shape[-2])
    sample.setdefault("width", sample["image"].shape[-1])
    metadata = export_metadata(cfg, method, fmt, tuple(sample["image"].shape[-2:]))
    data = export_bytes(trace_adapter(model.cpu(), sample), fmt, metadata)
    if int8_calibration is not None:
        data = quantize_onnx_int8(data, int8_calibration)
    return load_exported("<{} in memory>".format(fmt), fmt, data=data)


class Int8Comparison(NamedTuple):
    """One image: confident detections (score >= ``INT8_SCORE``) of the eager and the int8
    model, how many pair up (same class, IoU >= 0.5, greedy by IoU) and their mean IoU."""

    name: str
    eager: int
    int8: int
    matched: int
    mean_iou: Optional[float]


INT8_SCORE = 0.5


def compare_int8(name: str, eager, int8) -> Int8Comparison:
    """:class:`Int8Comparison` of two ``Instances``."""
    a = eager.to("cpu")[eager.scores.cpu() >= INT8_SCORE]
    b = int8.to("cpu")[int8.scores.cpu() >= INT8_SCORE]
    iou = pairwise_iou(a.pred_boxes, b.pred_boxes)
    iou[a.pred_classes[:, None] != b.pred_classes[None, :]] = 0
    ious = []
    while iou.numel() and float(iou.max()) >= 0.5:
        i, j = divmod(int(torch.argmax(iou)), iou.shape[1])
        ious.append(float(iou[i, j]))
        iou[i, :] = 0
        iou[:, j] = 0
    return Int8Comparison(name, len(a), len(b), len(ious),
                          sum(ious) / len(ious) if ious else None)


def int8_table(rows: Sequence[Int8Comparison]) -> str:
    """A text table of :class:`Int8Comparison` rows (no tolerance: int8 changes the outputs
    by design)."""
    header = ("image", "detections >= {:g} eager/int8".format(INT8_SCORE),
              "matched (same class, IoU >= 0.5)", "mean IoU of the matches")
    body = [(r.name, "{}/{}".format(r.eager, r.int8), str(r.matched),
             "-" if r.mean_iou is None else "{:.3f}".format(r.mean_iou)) for r in rows]
    return text_table(header, body)


def calibration_inputs(cfg, num_images: int, dataset: Optional[str] = None) -> List[dict]:
    """The first ``num_images`` images of ``dataset`` (default ``DATASETS.TRAIN[0]``) as the
    test-time model inputs (the config's test mapper: resized as in evaluation), for int8
    calibration.

    Raises:
        ConfigError: no data set, or ``num_images`` < 1.
    """
    if num_images < 1:
        raise ConfigError("--int8-calibration {}; allowed: a number of images >= 1".format(
            num_images))
    if dataset is None:
        if not cfg.DATASETS.TRAIN:
            raise ConfigError("int8 calibration reads DATASETS.TRAIN[0], which is empty; "
                              "allowed: a config with a training data set")
        dataset = cfg.DATASETS.TRAIN[0]
    dicts = load_dataset_dicts(dataset)[:num_images]
    mapper = FRCNNDatasetMapper(cfg, is_train=False)
    return [mapper(dict(d)) for d in dicts]


def export_int8(cfg, model, samples: Sequence[Tuple[str, np.ndarray]], fp32_path: str,
                path: str, calibration: Sequence[dict]) -> ExportReport:
    """Quantize the checked ONNX file ``fp32_path`` to int8 (calibrated on ``calibration``),
    write it to ``path`` atomically and compare it with the eager ``model`` on ``samples``.
    The differences are reported, not checked: int8 changes the outputs by design (its AP is
    measured by ``tools/benchmark.py --task variants --variants onnx_int8``)."""
    start = time.perf_counter()
    with open(fp32_path, "rb") as f:
        data = quantize_onnx_int8(f.read(), calibration)
    exported = load_exported(path, "onnx", data=data)
    predictor = BatchPredictor(cfg, model)
    inputs = [predictor.inputs(image) for _, image in samples]
    with torch.no_grad():
        expected = [model([x])[0]["instances"].to("cpu") for x in inputs]
    rows = [compare_int8(name, ref, exported([x])[0]["instances"])
            for (name, _), x, ref in zip(samples, inputs, expected)]
    table = int8_table(rows)
    atomic_write(path, lambda f: f.write(data))
    return ExportReport(path, True, rows, table, exported.metadata, time.perf_counter() - start)
