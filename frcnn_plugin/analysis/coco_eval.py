"""Ground truth and results as pycocotools objects, ``COCOeval`` runs, per-class AP and PR curves.

The ground truth is the data set's COCO JSON (``MetadataCatalog.get(name).json_file``), or,
for a registered data set without one, detectron2's ``convert_to_coco_json`` of it, as
``COCOEvaluator`` does. Results are a COCO results JSON (a list of ``image_id``,
``category_id``, ``bbox`` [x, y, w, h], ``score``), e.g. ``coco_instances_results.json`` of
``COCOEvaluator`` (``tools/train_net.py --eval-only``) or any detector's.
"""
import contextlib
import io
import json
import os
import warnings
from typing import Dict, List

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json

from ..data.checks import load_dataset_dicts
from ..errors import DataError
from ..files import require_file

__all__ = ["quiet_pycocotools", "load_ground_truth", "load_results", "run_cocoeval", "per_class_ap",
           "pr_curves"]


def quiet_pycocotools():
    """pycocotools prints to stdout; keep the tool's output to its own tables."""
    return contextlib.redirect_stdout(io.StringIO())


def load_ground_truth(dataset_name: str, cache_dir: str):
    """The data set's ground truth as a ``pycocotools.coco.COCO``.

    Args:
        dataset_name (str): a registered data set (checked by the plugin's loader).
        cache_dir (str): where ``convert_to_coco_json`` writes a data set without a JSON file.
    """
    load_dataset_dicts(dataset_name)  # unknown names, missing files: the plugin's errors
    json_file = MetadataCatalog.get(dataset_name).get("json_file", None)
    if not json_file:
        json_file = os.path.join(cache_dir, dataset_name + "_coco_format.json")
        convert_to_coco_json(dataset_name, json_file)
    with quiet_pycocotools():
        return COCO(json_file)


def load_results(path: str, gt) -> List[dict]:
    """A COCO results JSON, checked against the ground truth ``gt``.

    Raises:
        MissingFileError: no such file.
        DataError: not JSON, not a list of detections, or ids the ground truth does not have.
    """
    require_file(path, "Results file", "allowed: a COCO results JSON file")
    try:
        with open(path) as f:
            results = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError("{} is not valid JSON ({}); expected a COCO results file: a list of "
                        "{{image_id, category_id, bbox, score}}".format(path, e)) from None
    keys = ("image_id", "category_id", "bbox", "score")
    if not isinstance(results, list) or not all(
        isinstance(r, dict) and all(k in r for k in keys) for r in results
    ):
        raise DataError("{} is not a COCO results file; allowed: a JSON list of objects with "
                        "{}".format(path, ", ".join(keys)))
    bad_box = [r for r in results if not (isinstance(r["bbox"], list) and len(r["bbox"]) == 4)]
    if bad_box:
        raise DataError("{}: bbox {!r} of image {}; allowed: [x, y, width, height]".format(
            path, bad_box[0]["bbox"], bad_box[0]["image_id"]))
    for key, known, what in (("image_id", set(gt.getImgIds()), "image ids"),
                             ("category_id", set(gt.getCatIds()), "category ids")):
        unknown = sorted({r[key] for r in results} - known, key=str)
        if unknown:
            raise DataError("{}: {} {} not in the data set; allowed: its {} ({}){}".format(
                path, key, unknown[:5], what, _short(sorted(known)),
                " (predictions.json of tools/predict.py: predict with --dataset NAME to number "
                "the images by the data set's ids)" if key == "image_id" else ""))
    return results


def _short(values, n=10):
    text = ", ".join(str(v) for v in values[:n])
    return text + (", ..." if len(values) > n else "")


def run_cocoeval(gt, results: List[dict], iou_thrs=None, max_dets=None):
    """``COCOeval`` (bbox) evaluated and accumulated; None when there are no results.

    Args:
        iou_thrs (list[float] or None): ``params.iouThrs`` (default COCO's 0.5:0.95).
        max_dets (list[int] or None): ``params.maxDets`` (default [1, 10, 100]).
    """
    if not results:
        return None
    with quiet_pycocotools():
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        if iou_thrs is not None:
            ev.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
        if max_dets is not None:
            ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _mean_valid(p) -> float:
    """Mean of the precisions that exist (COCOeval writes -1 where there is no GT)."""
    p = p[p > -1]
    return float(np.mean(p)) * 100 if p.size else float("nan")


def per_class_ap(gt, ev) -> List[Dict[str, object]]:
    """Per class, then "all": AP, AP50, AP75 (IoU 0.5:0.95, 0.5, 0.75) and APs, APm, APl, in
    percent, from ``ev.eval["precision"]`` (T x R x K x A x M; maxDets 100); NaN where the class
    has no GT; zeros for every class when there are no results (``ev`` None)."""
    rows = []
    cats = gt.loadCats(gt.getCatIds())
    for k, cat in enumerate(cats + [{"name": "all"}]):
        if ev is None:
            rows.append({"class": cat["name"], **{m: 0.0 for m in _METRICS}})
            continue
        p = ev.eval["precision"]
        sel = p[:, :, k:k + 1] if k < len(cats) else p  # "all": every class
        rows.append({
            "class": cat["name"],
            "AP": _mean_valid(sel[:, :, :, 0, -1]),
            "AP50": _mean_valid(sel[0, :, :, 0, -1]),
            "AP75": _mean_valid(sel[5, :, :, 0, -1]),
            "APs": _mean_valid(sel[:, :, :, 1, -1]),
            "APm": _mean_valid(sel[:, :, :, 2, -1]),
            "APl": _mean_valid(sel[:, :, :, 3, -1]),
        })
    return rows


_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def pr_curves(gt, ev, iou: float) -> Dict[str, np.ndarray]:
    """Precision at COCO's 101 recall points, IoU ``iou`` (0.5 ... 0.95), all areas, 100
    detections: per class name, and "all" (the mean over classes with GT); -1 -> NaN."""
    if ev is None:
        return {}
    t = int(np.argmin(np.abs(ev.params.iouThrs - iou)))
    p = ev.eval["precision"][t, :, :, 0, -1].astype(np.float64)
    p[p < 0] = np.nan
    names = [c["name"] for c in gt.loadCats(gt.getCatIds())]
    curves = {n: p[:, k] for k, n in enumerate(names)}
    with np.errstate(all="ignore"), _warnings_off():
        curves["all"] = np.nanmean(p, axis=1)
    return curves


@contextlib.contextmanager
def _warnings_off():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
