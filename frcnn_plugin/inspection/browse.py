"""Pictures of a data set's images with their boxes and class names (``tools/browse_dataset.py``,
after detectron2's ``tools/visualize_data.py``).

* :func:`annotation_views`: the raw annotations
  (:func:`~frcnn_plugin.data.checks.load_dataset_dicts`),
  each box marked kept or dropped by the data checks with the reason
  (:func:`~frcnn_plugin.data.checks.box_problem`), each image kept or refused with the reason
  (no usable annotation left, with ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``; an unreadable file);
* :func:`loader_views`: what a training loader gives, after its mapper's augmentation (the
  boxes the model is trained on);
* :func:`draw_view` draws one with detectron2's ``Visualizer`` (dropped boxes dashed red,
  labelled with the reason; a refused image with a red banner); :func:`contact_sheet` puts
  pictures side by side.
"""
import itertools
import math
import os
import textwrap
from typing import Iterable, List, Optional

import numpy as np
from PIL import Image

from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb, read_image
from detectron2.structures import BoxMode
from detectron2.utils.visualizer import Visualizer

from ..data.checks import box_problem, load_dataset_dicts

__all__ = ["View", "annotation_views", "contact_sheet", "draw_view", "loader_views"]

DROPPED_COLOR = (1.0, 0.1, 0.1)
MIN_PICTURE_SIDE = 400  # small images are drawn larger, so that the labels fit


class View:
    """One picture to draw: an RGB image (None if unreadable), its boxes (XYXY), their labels,
    which are dropped (and why), and why the image is refused (None: kept)."""

    def __init__(self, name, image, boxes, labels, dropped, refused=None, size=None):
        self.name, self.image, self.boxes, self.labels = name, image, boxes, labels
        self.dropped, self.refused = dropped, refused
        self.size = size if image is None else image.shape[:2]


def _class_names(dataset_name):
    return list(MetadataCatalog.get(dataset_name).get("thing_classes", []) or [])


def _label(names, category_id):
    return names[category_id] if 0 <= category_id < len(names) else str(category_id)


def annotation_views(dataset_name: str, image_format: str = "RGB", filter_empty: bool = True,
                     limit: Optional[int] = None) -> Iterable[View]:
    """The raw records of a registered data set, with the data checks' verdicts (module doc).
    Loading the data set fails with the plugin's clear errors (e.g. an unregistered name)."""
    dicts = load_dataset_dicts(dataset_name)
    names = _class_names(dataset_name)
    return _annotation_views(dicts, names, image_format, filter_empty, limit)


def _annotation_views(dicts, names, image_format, filter_empty, limit):
    for record in itertools.islice(dicts, limit):
        boxes, labels, dropped = [], [], []
        usable = 0
        for ann in record.get("annotations", []):
            reason = box_problem(ann, record)
            try:
                box = BoxMode.convert(list(ann["bbox"]), ann.get("bbox_mode", BoxMode.XYWH_ABS),
                                      BoxMode.XYXY_ABS)
                box = [float(v) for v in box]
            except Exception:  # not four numbers: nothing to draw
                box = None
            label = _label(names, ann.get("category_id", -1))
            if reason is None:
                usable += not ann.get("iscrowd", 0)
            else:
                label = "dropped ({}): {}".format(reason, label)
            if box is not None and all(math.isfinite(v) for v in box):
                boxes.append(box)
                labels.append(label)
                dropped.append(reason is not None)
        refused = None
        if filter_empty and "annotations" in record and usable == 0:
            refused = "refused: no usable annotation (DATALOADER.FILTER_EMPTY_ANNOTATIONS)"
        try:
            image = convert_image_to_rgb(read_image(record["file_name"], image_format),
                                         image_format)
        except Exception as e:  # the training loader skips such images
            image = None
            refused = "refused: unreadable image ({})".format(type(e).__name__)
        yield View(os.path.basename(record.get("file_name", "?")), image, boxes, labels, dropped,
                   refused, size=(record.get("height", 64), record.get("width", 64)))


def loader_views(loader, dataset_name: str, image_format: str, limit: int) -> List[View]:
    """The first ``limit`` samples of a training loader (a batch is a list of dicts with
    ``image`` and ``instances``): the augmented image and its GT boxes."""
    names = _class_names(dataset_name)
    views = []
    for batch in loader:
        for sample in batch:
            image = convert_image_to_rgb(sample["image"].permute(1, 2, 0).numpy(), image_format)
            inst = sample.get("instances")
            boxes = inst.gt_boxes.tensor.tolist() if inst is not None else []
            classes = inst.gt_classes.tolist() if inst is not None else []
            views.append(View(os.path.basename(sample.get("file_name", "?")),
                              np.ascontiguousarray(image), boxes,
                              [_label(names, c) for c in classes], [False] * len(boxes)))
            if len(views) >= limit:
                return views
    return views


def draw_view(view: View, metadata=None) -> np.ndarray:
    """The picture of a :class:`View` as an RGB uint8 array."""
    image = view.image
    if image is None:
        image = np.full(tuple(view.size) + (3,), 128, dtype=np.uint8)
    h, w = image.shape[:2]
    scale = max(1.0, MIN_PICTURE_SIDE / max(h, w))  # room for the labels on small images
    vis = Visualizer(image, metadata, scale=scale)
    kept = [i for i, d in enumerate(view.dropped) if not d]
    if kept:
        vis.overlay_instances(boxes=np.array([view.boxes[i] for i in kept]),
                              labels=[view.labels[i] for i in kept])
    for box, label, d in zip(view.boxes, view.labels, view.dropped):
        if d:
            x0, x1 = sorted(box[0::2])
            y0, y1 = sorted(box[1::2])
            vis.draw_box((x0, y0, x1, y1), edge_color=DROPPED_COLOR, line_style="--")
            right = (x0 + x1) / 2 > w / 2  # the label grows towards the image's centre
            vis.draw_text(textwrap.fill(label, 24), (x1 if right else x0, y0),
                          color=DROPPED_COLOR, horizontal_alignment="right" if right else "left")
    if view.refused:
        text = textwrap.fill(view.refused, width=max(16, int(w * scale / 9)))
        vis.draw_text(text, (w / 2, h / 2), color=DROPPED_COLOR)
    return vis.get_output().get_image()


def contact_sheet(pictures: List[np.ndarray], tile: int = 256, columns: Optional[int] = None):
    """Pictures scaled to fit ``tile`` × ``tile`` (up or down) and laid out in a grid (a PIL image)."""
    columns = columns or max(1, math.ceil(math.sqrt(len(pictures))))
    rows = max(1, math.ceil(len(pictures) / columns))
    sheet = Image.new("RGB", (columns * tile, rows * tile), (255, 255, 255))
    for i, picture in enumerate(pictures):
        im = Image.fromarray(picture)
        ratio = min(tile / im.width, tile / im.height)
        im = im.resize((max(1, round(im.width * ratio)), max(1, round(im.height * ratio))),
                       Image.BILINEAR)
        sheet.paste(im, ((i % columns) * tile, (i // columns) * tile))
    return sheet
