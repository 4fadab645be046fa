"""Load-time checks of detection data sets: clear errors for whole-data-set faults, logged counts
for faults in single annotations.

Whole data set (fails at load time, naming the data set and the file or folder):

* an annotation file that does not exist, is not JSON, or is not COCO-format;
* a data set with no images, an image folder that does not exist;
* (test sets) an image file that does not exist.

Single annotations and images (training sets; logged as one summary with counts and examples):

* boxes of zero or negative size, non-finite (NaN, inf), wholly outside their image, or not
  four numbers: dropped (``DATALOADER.INVALID_BOXES: "drop"``, the default) or an error naming
  the image (``"error"``). Boxes partly outside the image are kept; detectron2 clips them;
* images left without annotations, or with crowd annotations only: removed when
  ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` (detectron2's default, True), by detectron2's
  ``filter_images_with_only_crowd_annotations``.

Unreadable image files in training sets are handled per sample at run time
(:mod:`frcnn_plugin.data.mappers`).
"""
import collections
import difflib
import itertools
import json
import logging
import math
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.build import (
    filter_images_with_few_keypoints,
    filter_images_with_only_crowd_annotations,
    load_proposals_into_dataset,
    print_instances_class_histogram,
)
from detectron2.data.detection_utils import check_metadata_consistency
from detectron2.structures import BoxMode

from ..errors import ConfigError, DataError, MissingFileError, UnknownDatasetError, UserError
from ..files import is_local
from .shapes import prepare_dataset

__all__ = [
    "BOX_PROBLEMS",
    "BoxReport",
    "box_problem",
    "load_dataset_dicts",
    "check_boxes",
    "checked_test_dataset_dicts",
    "checked_train_dataset_dicts",
    "load_train_dataset_dicts",
    "load_test_dataset_dicts",
]

logger = logging.getLogger(__name__)

# reason -> description, in the order they are checked
BOX_PROBLEMS = collections.OrderedDict(
    [
        ("malformed", "not four numbers"),
        ("non_finite", "NaN or infinite coordinates"),
        ("empty", "zero or negative width or height"),
        ("outside", "wholly outside the image"),
    ]
)
_CHECKED_MODES = (BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)


def load_dataset_dicts(name):
    """``DatasetCatalog.get(name)`` with errors that name the data set and the faulty file.

    Raises:
        UnknownDatasetError: (a ``KeyError``) the data set is not registered; the message lists
            the registered ones.
        MissingFileError: (a ``FileNotFoundError``) its annotation file or an image folder does
            not exist.
        DataError: (a ``ValueError``) the annotation file is not valid JSON or not COCO-format,
            or has no images.
    """
    if name not in DatasetCatalog.list():
        names = sorted(DatasetCatalog.list())
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.75)
        raise UnknownDatasetError(
            "Data set {!r} is not registered; allowed: {} (or register it first, e.g. with "
            "detectron2's register_coco_instances)".format(
                name, "a registered name such as " + ", ".join(close) if close
                else ", ".join(names)
            )
        )
    prepare_dataset(name)  # the plugin's generated data sets are written on first use
    meta = MetadataCatalog.get(name)
    json_file = meta.get("json_file", None)
    try:
        dicts = DatasetCatalog.get(name)
    except UserError:  # a checked loader (e.g. frcnn_plugin.data.own) explained it already
        raise
    except Exception as e:
        if is_local(json_file) and not os.path.isfile(json_file):
            raise MissingFileError(
                "Data set {!r}: annotation file not found: {}{}".format(
                    name, os.path.abspath(json_file), _builtin_root_hint(json_file)
                )
            ) from e
        raise DataError(_load_error(name, json_file, e)) from e
    if not dicts:
        raise DataError(
            "Data set {!r} is empty: no images{}".format(
                name, " in " + json_file if json_file else ""
            )
        )
    _check_image_folders(name, dicts, meta.get("image_root", None))
    return dicts


def _builtin_root_hint(path):
    """For a path under detectron2's data root: where that root is and how to move it."""
    root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    if not os.path.abspath(path).startswith(os.path.abspath(root) + os.sep):
        return ""
    return (". detectron2's built-in data sets are read from $DETECTRON2_DATASETS (now {!r}, "
            "absolute {}); see detectron2's datasets/README.md for the expected layout".format(
                root, os.path.abspath(root)))


def _load_error(name, json_file, e):
    where = json_file or "its loader"
    if isinstance(e, json.JSONDecodeError):
        return "Data set {!r}: {} is not valid JSON ({})".format(name, where, e)
    return (
        "Data set {!r}: cannot load {} ({}: {}); is it a COCO-format annotation file "
        "(\"images\", \"annotations\", \"categories\")?".format(name, where, type(e).__name__, e)
    )


def _check_image_folders(name, dicts, image_root):
    if is_local(image_root) and not os.path.isdir(image_root):
        raise MissingFileError(
            "Data set {!r}: image folder not found: {}{}".format(
                name, os.path.abspath(image_root), _builtin_root_hint(image_root)
            )
        )
    folders = {os.path.dirname(d["file_name"]) for d in dicts if "file_name" in d}
    missing = sorted(f for f in folders if is_local(f) and not os.path.isdir(f))
    if missing:
        raise MissingFileError(
            "Data set {!r}: image folder(s) not found: {}".format(name, ", ".join(missing[:5]))
        )


def _box_problem(box, mode, width, height):
    """The key of BOX_PROBLEMS that applies to one box, or None if it is usable."""
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        return "malformed"
    if len(values) != 4:
        return "malformed"
    if not all(math.isfinite(v) for v in values):
        return "non_finite"
    if mode not in _CHECKED_MODES:
        return None  # rotated or relative boxes: left to the user's own checks
    x0, y0, x1, y1 = BoxMode.convert(values, mode, BoxMode.XYXY_ABS)
    if x1 <= x0 or y1 <= y0:
        return "empty"
    if width and height and (x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height):
        return "outside"
    return None


def box_problem(annotation, record):
    """Why the data checks drop one annotation's box (a description from
    :data:`BOX_PROBLEMS`), or None if it is kept."""
    reason = _box_problem(annotation.get("bbox"), annotation.get("bbox_mode", BoxMode.XYWH_ABS),
                          record.get("width"), record.get("height"))
    return None if reason is None else BOX_PROBLEMS[reason]


class BoxReport:
    """Counts of invalid boxes by reason (:data:`BOX_PROBLEMS`), with a few examples."""

    def __init__(self):
        self.counts = collections.Counter()
        self.images = set()
        self.examples = []

    @property
    def total(self):
        return sum(self.counts.values())

    def add(self, reason, record, box):
        self.counts[reason] += 1
        self.images.add(record.get("image_id", record.get("file_name")))
        if len(self.examples) < 3:
            self.examples.append(_describe(record, box, reason))

    def summary(self):
        parts = ", ".join(
            "{} {}".format(self.counts[k], BOX_PROBLEMS[k]) for k in BOX_PROBLEMS if self.counts[k]
        )
        return "{} invalid box(es) in {} image(s): {}. E.g. {}".format(
            self.total, len(self.images), parts, "; ".join(self.examples)
        )


def _describe(record, box, reason):
    return "image id {} ({}, {}x{}): bbox {} is {}".format(
        record.get("image_id"), record.get("file_name"), record.get("width"),
        record.get("height"), list(box) if isinstance(box, (list, tuple)) else box,
        BOX_PROBLEMS[reason],
    )


def check_boxes(dicts, mode="drop", dataset_names=()):
    """Drop (``mode="drop"``) or refuse (``mode="error"``) invalid boxes (:data:`BOX_PROBLEMS`).

    Args:
        dicts (list[dict]): detectron2 data set dicts; modified in place when dropping.
        mode (str): "drop" or "error" (``DATALOADER.INVALID_BOXES``).
        dataset_names: names for the messages.

    Returns:
        BoxReport: what was dropped (empty in "error" mode).

    Raises:
        DataError: (a ``ValueError``) in "error" mode, naming the first image with an invalid
            box.
    """
    if mode not in ("drop", "error"):
        raise ConfigError("DATALOADER.INVALID_BOXES={!r}; allowed: 'drop' or 'error'".format(mode))
    report = BoxReport()
    for record in dicts:
        annotations = record.get("annotations")
        if not annotations:
            continue
        kept = []
        for ann in annotations:
            box = ann.get("bbox")
            reason = _box_problem(box, ann.get("bbox_mode", BoxMode.XYWH_ABS),
                                  record.get("width"), record.get("height"))
            if reason is None:
                kept.append(ann)
                continue
            if mode == "error":
                raise DataError(
                    "Data set {}: {}. Fix the annotation, or set DATALOADER.INVALID_BOXES "
                    "'drop' to drop such boxes.".format(
                        ", ".join(map(repr, dataset_names)) or "", _describe(record, box, reason)
                    )
                )
            report.add(reason, record, box)
        if len(kept) != len(annotations):
            record["annotations"] = kept
    if report.total:
        logger.warning(
            "Data set %s: dropped %s (DATALOADER.INVALID_BOXES='drop').",
            ", ".join(map(repr, dataset_names)), report.summary(),
        )
    return report


def load_train_dataset_dicts(cfg, names=None):
    """The training images of ``names`` (default ``cfg.DATASETS.TRAIN``), checked:
    :func:`checked_train_dataset_dicts` with the config's settings."""
    return checked_train_dataset_dicts(
        list(cfg.DATASETS.TRAIN if names is None else names),
        invalid_boxes=cfg.DATALOADER.INVALID_BOXES,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=(
            cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
        ),
        proposal_files=(
            list(cfg.DATASETS.PROPOSAL_FILES_TRAIN) if cfg.MODEL.LOAD_PROPOSALS else None
        ),
    )


def checked_train_dataset_dicts(
    names, *, invalid_boxes="drop", filter_empty=True, min_keypoints=0, proposal_files=None
):
    """The training images of ``names`` (one registered data set or several), checked; the
    plain-argument form of :func:`load_train_dataset_dicts`, for Python configs
    (``L(checked_train_dataset_dicts)(names=...)``, in place of detectron2's
    ``get_detection_dataset_dicts``).

    The steps of detectron2's ``get_detection_dataset_dicts`` with detectron2's own functions
    (proposals, crowd-only filter, keypoint filter, class consistency and histogram), plus the
    plugin's checks. That function itself does not fit: it loads with ``DatasetCatalog.get``
    (an ``AssertionError`` or a bare exception for a missing or malformed file) and filters
    images before any box is checked, so an image whose boxes are all invalid would stay (see
    ``tests/test_bad_data.py``); here invalid boxes are dropped first, then empty images go.

    Args:
        names (str or list[str]): registered data sets (``DATASETS.TRAIN``).
        invalid_boxes (str): "drop" or "error" (``DATALOADER.INVALID_BOXES``).
        filter_empty (bool): drop images without usable annotations
            (``DATALOADER.FILTER_EMPTY_ANNOTATIONS``).
        min_keypoints (int): drop images with fewer visible keypoints; 0: off.
        proposal_files (list[str] or None): precomputed proposals, one file per data set.

    Raises:
        UserError: see :func:`load_dataset_dicts` and :func:`check_boxes`; also when no usable
            image is left.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ConfigError("DATASETS.TRAIN is empty; allowed: one or more registered data sets")
    per_dataset = [load_dataset_dicts(name) for name in names]
    if proposal_files is not None:
        files = list(proposal_files)
        if len(files) != len(names):
            raise ConfigError(
                "DATASETS.PROPOSAL_FILES_TRAIN has {} files for {} data sets in DATASETS.TRAIN; "
                "allowed: one per data set".format(len(files), len(names))
            )
        per_dataset = [load_proposals_into_dataset(d, f) for d, f in zip(per_dataset, files)]
    dicts = list(itertools.chain.from_iterable(per_dataset))
    has_instances = "annotations" in dicts[0]
    if has_instances:
        check_boxes(dicts, invalid_boxes, names)
        if filter_empty:
            dicts = filter_images_with_only_crowd_annotations(dicts)
        if min_keypoints > 0:
            dicts = filter_images_with_few_keypoints(dicts, min_keypoints)
    if not dicts:
        raise DataError(
            "No usable training images in DATASETS.TRAIN={}: every image lacks usable "
            "annotations (see the log above)".format(tuple(names))
        )
    if has_instances:
        try:
            check_metadata_consistency("thing_classes", names)
            print_instances_class_histogram(dicts, MetadataCatalog.get(names[0]).thing_classes)
        except AttributeError:  # no class names for this data set
            pass
    return dicts


def load_test_dataset_dicts(cfg, dataset_name):
    """The images of a test data set, checked: :func:`checked_test_dataset_dicts` with the
    config's proposal file for it, if any."""
    proposal_file = None
    if cfg.MODEL.LOAD_PROPOSALS:
        index = list(cfg.DATASETS.TEST).index(dataset_name)
        proposal_file = cfg.DATASETS.PROPOSAL_FILES_TEST[index]
    return checked_test_dataset_dicts(dataset_name, proposal_file=proposal_file)


def checked_test_dataset_dicts(dataset_name, *, proposal_file=None):
    """The images of a test data set, with every image file checked to exist (so that a periodic
    evaluation does not fail hours into training on a missing file); the plain-argument form of
    :func:`load_test_dataset_dicts`, for Python configs."""
    dicts = load_dataset_dicts(dataset_name)
    missing = [d["file_name"] for d in dicts if is_local(d.get("file_name"))
               and not os.path.isfile(d["file_name"])]
    if missing:
        raise MissingFileError(
            "Data set {!r}: {} of {} image files not found, e.g. {}; evaluation needs every "
            "image".format(dataset_name, len(missing), len(dicts), ", ".join(missing[:3]))
        )
    if proposal_file:
        dicts = load_proposals_into_dataset(dicts, proposal_file)
    return dicts
