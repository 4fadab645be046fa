"""TorchScript and ONNX export of a built detector by tracing, checked against the eager model
(``tools/export_model.py``), and the exported files as prediction backends
(``tools/predict.py --backend``).

:func:`export_model` traces, serializes, reloads and compares; :func:`load_exported` runs a
file as the eager model is run; :func:`export_int8` writes the ONNX file's int8 twin (ONNX
Runtime's static quantization, :mod:`.quantize`).
"""
from .backends import BACKENDS, ExportedModel, check_metadata, load_exported  # noqa: F401
from .check import BOX_ATOL, SCORE_ATOL, Comparison, comparison_table  # noqa: F401
from .exporter import (  # noqa: F401
    EXPORT_METHODS,
    FILE_NAMES,
    FORMATS,
    INPUT_NAMES,
    METADATA_KEY,
    ONNX_OPSET,
    OUTPUT_NAMES,
    check_exportable,
)
from .run import (  # noqa: F401
    ExportCheckError,
    ExportReport,
    calibration_inputs,
    export_int8,
    export_model,
    exported_model,
    output_path,
)
