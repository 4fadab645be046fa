"""The COCO error breakdown (Hoiem et al., 2012, as in the COCO detection ``analyze``): how much
precision each kind of error costs, as precision-recall curves with one kind forgiven at a time.

Steps (each includes the previous ones' forgiveness): ``C75`` (PR at IoU 0.75), ``C50`` (0.5),
``Loc`` (0.1: localization errors forgiven), ``Sim`` (confusions with a class of the same
supercategory forgiven), ``Oth`` (any class confusion forgiven), ``BG`` (every false positive
forgiven: precision 1 up to the recall reached), ``FN`` (the rest: precision 1 everywhere).

All steps are pycocotools' ``COCOeval`` runs: C75, C50 and Loc with ``iouThrs`` [0.75, 0.5,
0.1]; Sim and Oth per class with the GT boxes of the forgiven classes turned into ignored crowd
boxes of the class under study (a detection on them then counts neither as a true nor as a false
positive) at IoU 0.1. A data set without supercategories has no Sim confusions (Sim = Loc).
"""
import copy
from typing import Dict, List

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .coco_eval import quiet_pycocotools

__all__ = ["ERROR_STEPS", "error_breakdown"]

ERROR_STEPS = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")


def _evaluate(gt, dt, iou_thrs, cat_ids=None):
    with quiet_pycocotools():
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
        ev.params.maxDets = [100]
        if cat_ids is not None:
            ev.params.catIds = list(cat_ids)
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"]  # T x R x K x A x 1


def _forgiving(gt, cat_id: int, forgiven):
    """A copy of ``gt`` whose boxes of the ``forgiven`` classes are ignored crowd boxes of
    ``cat_id``."""
    data = copy.deepcopy(gt.dataset)
    for a in data["annotations"]:
        if a["category_id"] in forgiven:
            a.update(category_id=cat_id, iscrowd=1, ignore=1)
    with quiet_pycocotools():
        out = COCO()
        out.dataset = data
        out.createIndex()
    return out


def error_breakdown(gt, results: List[dict]) -> Dict[str, np.ndarray]:
    """Precision at COCO's 101 recall points for each step of :data:`ERROR_STEPS`.

    Returns:
        dict: class name (and "all": the mean over classes) -> (7, 101) array, rows in the order
        of :data:`ERROR_STEPS`, all areas, 100 detections; zeros without results.
    """
    cats = gt.loadCats(gt.getCatIds())
    names = [c["name"] for c in cats] + ["all"]
    if not results:
        out = {n: np.zeros((len(ERROR_STEPS), 101)) for n in names}
        for v in out.values():
            v[-1] = 1.0
        return out
    with quiet_pycocotools():
        dt = gt.loadRes(results)
    base = _evaluate(gt, dt, [0.75, 0.5, 0.1])[:, :, :, 0, 0]  # 3 x R x K
    ps = np.zeros((len(ERROR_STEPS), base.shape[1], len(cats)))
    ps[:3] = base
    for k, cat in enumerate(cats):
        cid = cat["id"]
        dets = [r for r in results if r["category_id"] == cid]
        sup = cat.get("supercategory")
        siblings = {c["id"] for c in cats if sup and c.get("supercategory") == sup} - {cid}
        others = {c["id"] for c in cats} - {cid}
        for step, forgiven in ((3, siblings), (4, others)):
            if not dets:
                ps[step, :, k] = 0
                continue
            g = _forgiving(gt, cid, forgiven)
            with quiet_pycocotools():
                d = g.loadRes(dets)
            ps[step, :, k] = _evaluate(g, d, [0.1], cat_ids=[cid])[0, :, 0, 0, 0]
    ps[ps == -1] = 0
    ps[5] = ps[4] > 0
    ps[6] = 1.0
    out = {n: ps[:, :, k] for k, n in enumerate(names[:-1])}
    out["all"] = ps.mean(axis=2)
    return out
