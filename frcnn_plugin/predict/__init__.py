"""Run a trained detector on images, folders, globs and videos (``tools/predict.py``): pictures
with the detections drawn, ``predictions.json`` (COCO results) and ``predictions.jsonl``.

:func:`plan_outputs` expands the inputs and checks the outputs before any work;
:func:`run_predictions` predicts in batches (:class:`BatchPredictor`) and writes.
"""
from .classes import ClassInfo, class_info  # noqa: F401
from .inputs import Source, expand_inputs, output_names  # noqa: F401
from .predictor import BatchPredictor  # noqa: F401
from .run import (  # noqa: F401
    PREDICTIONS_JSON,
    PREDICTIONS_JSONL,
    Plan,
    Summary,
    plan_outputs,
    run_predictions,
)
from .video import VideoReader, VideoWriter, count_frames  # noqa: F401
