"""An independent float64 NumPy oracle of the Faster R-CNN paper's RPN anchor labels.

Written from the paper (Ren et al., 2015, Sec. 3.1.1 and 3.1.2) and from the anchor formula the
configs state, not from the plugin's or detectron2's code:

* anchors: at every feature-map location (i, j) of a stride-``stride`` map, centred at
  ``((j + offset) * stride, (i + offset) * stride)`` (the paper's VGG16 configs: stride 16,
  offset 0.5, i.e. ``16 j + 8``), one box per size ``s`` (128, 256, 512) and aspect ratio
  ``r = h / w`` (0.5, 1, 2) with ``w = s / sqrt(r)``, ``h = s * sqrt(r)`` (area ``s**2`` for
  every ratio); ordered by location (row major), then size, then ratio;
* boxes are in continuous coordinates: an image of width ``W`` spans ``[0, W]``, so an anchor
  is inside when ``x1 >= 0, y1 >= 0, x2 <= W, y2 <= H`` (an anchor flush with the right or
  bottom border is inside); cross-boundary anchors are ignored (-1);
* among the inside anchors: positive (1) if its IoU with some GT is >= 0.7, or if it is one of
  a GT's best inside anchors (ties included) and that best IoU is > 0 (``min_iou``; the paper
  is silent on a best IoU of 0); negative (0) if its highest IoU is < 0.3 and it is not
  positive; ignored (-1) otherwise.

Ties: anchors of one size have the same area for every ratio, so a small GT inside several of
them has the *same* IoU with all of them in exact arithmetic. They are ties within the relative
tolerance :data:`TIE_RTOL` (the one the plugin's matcher states). :func:`rpn_labels` also checks
the premises that make its answer independent of rounding: no IoU within ``margin`` of 0.3 or
0.7, and in each GT's row no IoU in the band between an exact tie (relative 1e-9) and a clear
loser (relative 1e-4) below the maximum.
"""
import numpy as np

__all__ = ["TIE_RTOL", "paper_anchors", "inside_image", "iou_matrix", "rpn_labels"]

# A GT's best anchors: every anchor whose IoU is >= best * (1 - TIE_RTOL).
TIE_RTOL = 1e-5

PAPER_SIZES = (128.0, 256.0, 512.0)
PAPER_RATIOS = (0.5, 1.0, 2.0)


def paper_anchors(grid_h, grid_w, stride=16, offset=0.5, sizes=PAPER_SIZES, ratios=PAPER_RATIOS):
    """(grid_h * grid_w * len(sizes) * len(ratios), 4) float64 XYXY anchors."""
    shapes = []
    for s in sizes:
        for r in ratios:
            w, h = s / np.sqrt(r), s * np.sqrt(r)
            shapes.append((w, h))
    wh = np.array(shapes, dtype=np.float64)  # (A, 2)
    cy, cx = np.meshgrid(
        (np.arange(grid_h, dtype=np.float64) + offset) * stride,
        (np.arange(grid_w, dtype=np.float64) + offset) * stride,
        indexing="ij",
    )
    centres = np.stack([cx.ravel(), cy.ravel()], axis=1)  # (L, 2), row major
    lo = centres[:, None, :] - wh[None, :, :] / 2
    hi = centres[:, None, :] + wh[None, :, :] / 2
    return np.concatenate([lo, hi], axis=2).reshape(-1, 4)


def inside_image(anchors, height, width):
    """Mask of the anchors lying within ``[0, width] x [0, height]`` (continuous coordinates)."""
    a = np.asarray(anchors, dtype=np.float64)
    return (a[:, 0] >= 0) & (a[:, 1] >= 0) & (a[:, 2] <= width) & (a[:, 3] <= height)


def iou_matrix(boxes_a, boxes_b):
    """(len(a), len(b)) float64 IoU; 0 where the union is 0."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def rpn_labels(anchors, gt_boxes, height, width, min_iou=0.0, lo=0.3, hi=0.7, margin=1e-6,
               check=True):
    """The paper's labels: (R,) int64 array, -1 ignore, 0 negative, 1 positive.

    Args:
        anchors: (R, 4) XYXY anchors.
        gt_boxes: (G, 4) XYXY ground-truth boxes (G may be 0).
        height, width: the input image size.
        min_iou: a GT's best anchors are positive only when their IoU is above it (the paper as
            read here: 0; a negative value: always, also at IoU 0, as py-faster-rcnn).
        margin: with ``check``, assert that no IoU lies within it of ``lo`` or ``hi``.
    """
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.full(len(anchors), -1, dtype=np.int64)
    inside = np.flatnonzero(inside_image(anchors, height, width))
    iou = iou_matrix(gt, anchors[inside])  # (G, inside)
    if check and iou.size:
        for t in (lo, hi):
            assert not (np.abs(iou - t) < margin).any(), "an IoU within {} of {}".format(margin, t)
    best_per_anchor = iou.max(axis=0) if len(gt) else np.zeros(len(inside))
    sub = np.full(len(inside), -1, dtype=np.int64)
    positive = best_per_anchor >= hi
    for row in iou:
        if not row.size:
            continue
        best = row.max()
        if not best > min_iou:
            continue
        if check and best > 0:
            gap = (best - row) / best
            assert not ((gap > 1e-9) & (gap < 1e-4)).any(), "a near-tie that rounding decides"
        positive |= row >= best * (1 - TIE_RTOL)
    sub[best_per_anchor < lo] = 0
    sub[positive] = 1
    labels[inside] = sub
    return labels
