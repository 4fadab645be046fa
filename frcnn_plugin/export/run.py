"""Export a detector and check the file against the eager model (``tools/export_model.py``).

:func:`export_model` traces the model on the first sample image, serializes it (TorchScript or
ONNX), loads those very bytes back (``torch.jit.load`` / onnxruntime on the CPU), runs them on
every sample image and compares with the eager model's outputs (:mod:`.check`); the file is
written atomically only when every sample agrees within the tolerances (or when asked to
keep it anyway).
"""
import os
import time
from typing import List, NamedTuple, Sequence, Tuple

import numpy as np
import torch

from ..cli import OutputExistsError, UserError
from ..files import atomic_write
from ..predict.predictor import BatchPredictor
from .backends import load_exported
from .check import BOX_ATOL, SCORE_ATOL, Comparison, compare_instances, comparison_table
from .exporter import FILE_NAMES, check_exportable, export_bytes, export_metadata, trace_adapter

__all__ = ["ExportCheckError", "ExportReport", "output_path", "export_model", "exported_model"]


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


def exported_model(cfg, model, sample: dict, fmt: str, method: str = "tracing"):
    """``model`` traced on one input dict (``image``, ``height``, ``width``) and loaded back
    from its bytes as an :class:`~frcnn_plugin.export.backends.ExportedModel` (no file, no
    check), e.g. to time a backend (``tools/benchmark.py --backend``)."""
    check_exportable(cfg, method, fmt)
    sample = dict(sample, image=sample["image"].float().cpu())
    sample.setdefault("height", sample["image"].shape[-2])
    sample.setdefault("width", sample["image"].shape[-1])
    metadata = export_metadata(cfg, method, fmt, tuple(sample["image"].shape[-2:]))
    data = export_bytes(trace_adapter(model.cpu(), sample), fmt, metadata)
    return load_exported("<{} in memory>".format(fmt), fmt, data=data)
