"""See inside the detector: stage-by-stage inspection (:mod:`.pipeline`), anchor pictures
(:mod:`.anchor_viz`) and the anchor fit of a data set (:mod:`.anchor_fit`). The command-line
tools are ``tools/inspect_pipeline.py``, ``tools/visualize_anchors.py`` and
``tools/analyze_anchors.py``; the README (See inside the detector) shows them."""
from .anchor_fit import AnchorFitter, AnchorSpec, analyze_dataset, format_report, plot_fit
from .anchor_viz import draw_all
from .inputs import InspectionInput, load_dataset_input, load_image_input, test_resize
from .pipeline import PipelineTrace, Stage, format_table, trace_pipeline, trace_to_dict

__all__ = [
    "AnchorFitter",
    "AnchorSpec",
    "analyze_dataset",
    "format_report",
    "plot_fit",
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
