"""One image through a detector, stage by stage (``tools/inspect_pipeline.py``).

- :mod:`.trace` computes: :func:`trace_pipeline` runs the model's own modules and returns a
  :class:`PipelineTrace` (the stages as plain data: key, value, facts; and the tensors for
  pictures), without changing the model's state.
- :mod:`.render` displays: :func:`format_table` (the Markdown table of the README) and
  :func:`trace_to_dict` (the ``--json`` output).
"""
from .render import format_table, format_value, stage_detail, stage_name, trace_to_dict
from .trace import MISSING, STAGE_KEYS, PipelineTrace, Stage, trace_pipeline

__all__ = [
    "MISSING",
    "STAGE_KEYS",
    "PipelineTrace",
    "Stage",
    "trace_pipeline",
    "format_table",
    "format_value",
    "stage_detail",
    "stage_name",
    "trace_to_dict",
]
