"""The anchor fit of a data set: :func:`analyze_dataset` extracts the boxes (:mod:`.data`), scores
the config's anchors (:mod:`.scoring`) and searches better ones (:mod:`.search`); the result is
plain data (:class:`AnchorFitResult`), shown by :mod:`.report` and :mod:`.plot`."""
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ...data.checks import load_dataset_dicts
from ...errors import DataError
from .data import dataset_gt_boxes
from .scoring import AnchorFitter, AnchorSpec, FitStats
from .search import suggest_anchors

__all__ = ["AnchorFitResult", "analyze_dataset"]


@dataclass
class AnchorFitResult:
    """Output of :func:`analyze_dataset`: the data set, its resized GT boxes (all images
    concatenated, (G, 4) XYXY), the scorer, the config's anchors and the suggestion with their
    fits (:class:`FitStats`), the number of candidates scored and the test-time resize."""

    dataset: str
    num_images: int
    image_sizes: List[Tuple[int, int]]
    gt_boxes: np.ndarray
    fitter: AnchorFitter
    current: AnchorSpec
    current_stats: FitStats
    suggested: AnchorSpec
    suggested_stats: FitStats
    num_candidates: int
    min_size: int = 0
    max_size: int = 0


def analyze_dataset(cfg, dataset_name: str, max_images: int = 0) -> AnchorFitResult:
    """Fit of the config's anchors to a registered data set, and a suggestion."""
    dicts = load_dataset_dicts(dataset_name)
    min_size, max_size = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    gts = dataset_gt_boxes(dicts, min_size, max_size, max_images)
    if not gts:
        raise DataError("Data set {!r} has no GT boxes to analyze".format(dataset_name))
    fitter = AnchorFitter(cfg)
    current_stats = fitter.evaluate(fitter.current, gts)
    suggested, stats, n = suggest_anchors(fitter, gts)
    return AnchorFitResult(
        dataset_name, len(dicts[:max_images] if max_images else dicts), [s for s, _ in gts],
        np.concatenate([b for _, b in gts]), fitter, fitter.current, current_stats, suggested,
        stats, n, min_size, max_size,
    )
