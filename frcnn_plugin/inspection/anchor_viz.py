"""Pictures of anchors and of the training targets, from a :class:`PipelineTrace`.

Every picture is drawn on the resized input image (what the network sees), zoomed by an integer
factor ``scale``; colours are :mod:`frcnn_plugin.inspection.draw`'s (GT green (0, 255, 0),
positives / foreground red (255, 0, 0), negatives / background blue (0, 0, 255), predictions
magenta (255, 0, 255)); the ground truth is drawn last, on top.

==========================  =================================================================
file (:func:`draw_all`)     picture
==========================  =================================================================
``base_anchors.png``        the A cell anchors of one location near the image centre, on the
                            feature grid (one colour per anchor size); canvas padded so that
                            the largest anchor fits
``shifted_anchors.png``     one anchor shape at 3 neighbouring locations of a row (shifts of
                            one stride; orange, cyan, yellow), and every anchor centre (white)
``iou_heatmap.png``         per feature-map location, the best IoU of its anchors with one GT
                            box (``magma`` colour map, 0 black ... 1 light yellow), GT on top
``positive_anchors.png``    anchors labelled positive (IoU >= 0.7 or a GT's best) in red;
                            with predictions, those anchors decoded with the RPN's deltas in
                            magenta
``rpn_samples.png``         the anchors the RPN's sampler picked: positives red, negatives blue
``roi_samples.png``         the RoIs the ROI heads sampled: foreground red, background blue
==========================  =================================================================
"""
import os
from typing import Dict, Optional

import numpy as np
import torch

from detectron2.structures import Boxes, pairwise_iou

from . import draw
from .draw import Canvas

__all__ = [
    "draw_base_anchors",
    "draw_shifted_anchors",
    "iou_heatmap",
    "draw_iou_heatmap",
    "draw_boxes_vs_gt",
    "draw_all",
]


def _level(trace, level: int):
    """(anchors (Hi, Wi, A, 4) tensor, stride) of one feature map."""
    gh, gw = trace.grid_sizes[level]
    a = trace.num_anchors[level]
    return trace.anchors[level].tensor.view(gh, gw, a, 4), trace.strides[level]


def _size_colors(cells: torch.Tensor):
    """A colour per anchor, by the rank of its size (sqrt area) among the distinct sizes."""
    sizes = torch.sqrt((cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1]))
    distinct = sorted(set(round(float(s), 1) for s in sizes))
    return [draw.ANCHOR_COLORS[distinct.index(round(float(s), 1)) % len(draw.ANCHOR_COLORS)]
            for s in sizes]


def draw_base_anchors(trace, scale: int = 1, level: int = 0) -> Canvas:
    """The anchors of the location nearest the image centre, on the stride grid."""
    grid, stride = _level(trace, level)
    gh, gw = grid.shape[:2]
    cells = grid[gh // 2, gw // 2]
    h, w = trace.image_size
    overhang = max(0.0, float(-cells[:, :2].min()), float(cells[:, 2].max() - w),
                   float(cells[:, 3].max() - h))
    canvas = Canvas(trace.image_rgb, scale, margin=int(np.ceil(overhang * scale)) + 2, dim=0.5)
    canvas.grid(stride, (h, w))
    for box, color in zip(cells.tolist(), _size_colors(cells)):
        canvas.box(box, color)
    cx, cy = (float(cells[0, 0] + cells[0, 2]) / 2, float(cells[0, 1] + cells[0, 3]) / 2)
    canvas.point(cx, cy, draw.CENTRE, radius=max(2, scale))
    return canvas


def draw_shifted_anchors(trace, scale: int = 1, level: int = 0,
                         anchor_index: Optional[int] = None, shifts: int = 3) -> Canvas:
    """One anchor shape (default: the smallest of ratio closest to 1) at ``shifts``
    consecutive locations of the middle row, one stride apart (one colour per shift), and
    every anchor centre as a white dot."""
    grid, stride = _level(trace, level)
    gh, gw = grid.shape[:2]
    if anchor_index is None:
        cells = grid[0, 0]
        wh = (cells[:, 2:] - cells[:, :2]).clamp(min=1e-6)
        ratio = torch.log(wh[:, 1] / wh[:, 0]).abs()
        size = wh.prod(dim=1)
        anchor_index = min(range(len(cells)), key=lambda k: (round(float(ratio[k]), 3),
                                                             float(size[k])))
    canvas = Canvas(trace.image_rgb, scale, dim=0.5)
    centres = (grid[..., 0, :2] + grid[..., 0, 2:]) / 2
    for cx, cy in centres.view(-1, 2).tolist():
        canvas.point(cx, cy, draw.CENTRE, radius=max(1, scale // 2))
    i, j0 = gh // 2, max(0, gw // 2 - shifts // 2)
    for n, j in enumerate(range(j0, min(gw, j0 + shifts))):
        color = draw.ANCHOR_COLORS[n % len(draw.ANCHOR_COLORS)]
        canvas.box(grid[i, j, anchor_index].tolist(), color)
        canvas.point(*centres[i, j].tolist(), color, radius=max(2, scale))
    return canvas


def iou_heatmap(trace, gt_index: int = 0, level: int = 0) -> np.ndarray:
    """(Hi, Wi) array: per location, the best IoU of its A anchors with GT box ``gt_index``
    (all anchors, inside the image or not)."""
    grid, _ = _level(trace, level)
    gt = trace.gt.gt_boxes[[gt_index]]
    ious = pairwise_iou(gt, Boxes(grid.reshape(-1, 4)))[0]
    return ious.view(grid.shape[:3]).max(dim=2).values.cpu().numpy()


def draw_iou_heatmap(trace, scale: int = 1, gt_index: int = 0, level: int = 0) -> Canvas:
    """The IoU heat-map blended over the image (each feature cell covers stride × stride
    pixels), the values written in cells large enough, and the GT box in green."""
    import matplotlib  # deferred: matplotlib (only the pictures need it)

    heat = iou_heatmap(trace, gt_index, level)
    stride = trace.strides[level]
    h, w = trace.image_size
    colors = (matplotlib.colormaps["magma"](heat)[..., :3] * 255).astype(np.float32)
    up = np.kron(colors, np.ones((stride, stride, 1), dtype=np.float32))
    up = np.pad(up, ((0, max(0, h - up.shape[0])), (0, max(0, w - up.shape[1])), (0, 0)))[:h, :w]
    blended = 0.75 * up + 0.25 * trace.image_rgb.astype(np.float32)
    canvas = Canvas(np.clip(blended, 0, 255).astype(np.uint8), scale)
    if stride * scale >= 28:
        for i in range(heat.shape[0]):
            for j in range(heat.shape[1]):
                canvas.text(j * stride + 1, i * stride + 1, "{:.2f}".format(heat[i, j]).lstrip("0"),
                            draw.CENTRE if heat[i, j] < 0.6 else (0, 0, 0))
    canvas.box(trace.gt.gt_boxes.tensor[gt_index].tolist(), draw.GT, width=max(2, scale))
    return canvas


def draw_boxes_vs_gt(trace, scale: int = 1, positives=None, negatives=None,
                     predictions=None) -> Canvas:
    """Negatives (blue), positives (red), predictions (magenta), then the GT (green)."""
    canvas = Canvas(trace.image_rgb, scale, dim=0.6)
    for boxes, color in ((negatives, draw.NEGATIVE), (positives, draw.POSITIVE),
                         (predictions, draw.PREDICTION)):
        if boxes is not None:
            canvas.boxes(boxes.tolist(), color, width=1)
    if trace.gt is not None:
        canvas.boxes(trace.gt.gt_boxes.tensor.tolist(), draw.GT, width=max(2, scale))
    return canvas


def draw_all(trace, out_dir: str, scale: int = 1, gt_index: int = 0,
             predictions: bool = False) -> Dict[str, str]:
    """Write every picture that the trace allows; returns {picture name: file path}.

    Nothing is drawn without anchors; without ground truth only the first two pictures;
    without RoIs (no ROI heads) no ``roi_samples.png``.

    Args:
        trace (PipelineTrace): from :func:`trace_pipeline`.
        out_dir (str): output directory (created).
        scale (int): integer zoom of every picture.
        gt_index (int): the GT box of the heat-map.
        predictions (bool): also draw the positive anchors decoded with the RPN's deltas
            (meaningful with trained weights).
    """
    os.makedirs(out_dir, exist_ok=True)
    written = {}

    def save(name, canvas):
        written[name] = canvas.save(os.path.join(out_dir, name + ".png"))

    if trace.anchors is None:
        return written
    save("base_anchors", draw_base_anchors(trace, scale))
    save("shifted_anchors", draw_shifted_anchors(trace, scale))
    if trace.gt is None or len(trace.gt) == 0:
        return written
    save("iou_heatmap", draw_iou_heatmap(trace, scale, gt_index=min(gt_index, len(trace.gt) - 1)))
    anchors = torch.cat([a.tensor for a in trace.anchors])
    if trace.anchor_labels is not None:
        pos = trace.anchor_labels == 1
        preds = trace.pred_anchor_boxes[pos] if predictions and trace.pred_anchor_boxes is not \
            None else None
        save("positive_anchors", draw_boxes_vs_gt(trace, scale, anchors[pos], predictions=preds))
    if trace.sampled_labels is not None:
        labels = trace.sampled_labels
        save("rpn_samples", draw_boxes_vs_gt(trace, scale, anchors[labels == 1],
                                             anchors[labels == 0]))
    if trace.sampled_rois is not None:
        rois, classes = trace.sampled_rois.proposal_boxes.tensor, trace.sampled_rois.gt_classes
        fg = (classes >= 0) & (classes < trace.num_classes)
        save("roi_samples", draw_boxes_vs_gt(trace, scale, rois[fg], rois[~fg]))
    return written
