"""See inside the detector. Computing and showing are kept apart in each part:

- :mod:`.pipeline`: one image stage by stage; ``pipeline.trace`` computes the stages as plain
  data (the model is left as it was), ``pipeline.render`` writes the table and the JSON;
- :mod:`.anchor_viz` (with :mod:`.draw`): anchor pictures from a trace;
- :mod:`.anchor_fit`: the anchor fit of a data set, one module per job (data, scoring, search,
  analysis, report, plot);
- :mod:`.inputs` and :mod:`.cli`: the image input and model loading the tools share.

The command-line tools are ``tools/inspect_pipeline.py``, ``tools/visualize_anchors.py`` and
``tools/analyze_anchors.py``; the README (See inside the detector) shows them."""
from .anchor_fit import (
    AnchorFitter,
    AnchorSpec,
    analyze_dataset,
    format_report,
    plot_fit,
    result_to_dict,
)
from .anchor_viz import draw_all
from .inputs import InspectionInput, load_dataset_input, load_image_input, test_resize
from .pipeline import PipelineTrace, Stage, format_table, trace_pipeline, trace_to_dict

__all__ = [
    "AnchorFitter",
    "AnchorSpec",
    "analyze_dataset",
    "format_report",
    "plot_fit",
    "result_to_dict",
    "draw_all",
    "InspectionInput",
    "load_dataset_input",
    "load_image_input",
    "test_resize",
    "PipelineTrace",
    "Stage",
    "format_table",
    "trace_pipeline",
    "trace_to_dict",
]
