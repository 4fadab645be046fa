"""Class names and COCO category ids of a model's predictions, from a data set's metadata."""
import logging
from typing import List, NamedTuple, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from ..data.checks import load_dataset_dicts
from ..errors import UserError

__all__ = ["ClassInfo", "class_info"]

logger = logging.getLogger(__name__)


class ClassInfo(NamedTuple):
    """``names[i]`` and ``category_ids[i]`` of the model's class ``i``; ``source``: the data set
    they come from (None: none had them; the names are then ``"class i"``)."""

    names: List[str]
    category_ids: List[int]
    source: Optional[str]

    def name(self, index: int) -> str:
        return self.names[index] if 0 <= index < len(self.names) else "class {}".format(index)

    def category_id(self, index: int) -> int:
        return self.category_ids[index] if 0 <= index < len(self.category_ids) else index

    def metadata(self) -> Metadata:
        """A detectron2 ``Metadata`` with ``thing_classes``, for its ``Visualizer``."""
        return Metadata(name=self.source or "predictions", thing_classes=list(self.names))


def _needs_loading(meta):
    """COCO-format metadata gets its class names and category ids when the JSON is loaded."""
    if not meta.get("thing_classes", None):
        return True
    coco = meta.get("json_file", None) is not None or meta.get("evaluator_type", None) == "coco"
    return coco and not meta.get("thing_dataset_id_to_contiguous_id", None)


def _from_metadata(name):
    meta = MetadataCatalog.get(name)
    if _needs_loading(meta):
        try:
            load_dataset_dicts(name)  # detectron2's load_coco_json sets the metadata
        except UserError as e:
            logger.warning("No class names from data set %r: %s", name, e)
        meta = MetadataCatalog.get(name)
    names = meta.get("thing_classes", None)
    if not names:
        return None
    id_map = meta.get("thing_dataset_id_to_contiguous_id", None) or {}
    inverse = {contiguous: dataset_id for dataset_id, contiguous in id_map.items()}
    return ClassInfo(list(names), [inverse.get(i, i) for i in range(len(names))], name)


def class_info(cfg) -> ClassInfo:
    """The class names and category ids of ``DATASETS.TEST[0]``, else ``DATASETS.TRAIN[0]``
    (metadata ``thing_classes`` and ``thing_dataset_id_to_contiguous_id``); a COCO-format data
    set is loaded for them if its metadata lacks them. Without either: ``"class i"`` and
    ``i`` for ``i < MODEL.ROI_HEADS.NUM_CLASSES``, with a warning."""
    for name in list(cfg.DATASETS.TEST)[:1] + list(cfg.DATASETS.TRAIN)[:1]:
        if name in DatasetCatalog.list():
            info = _from_metadata(name)
            if info is not None:
                _check_count(info, cfg.MODEL.ROI_HEADS.NUM_CLASSES)
                return info
    n = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    logger.warning("No class names: neither DATASETS.TEST[0] nor DATASETS.TRAIN[0] is a "
                   "registered data set with thing_classes; labels are 'class 0' ... "
                   "'class %d'", n - 1)
    return ClassInfo(["class {}".format(i) for i in range(n)], list(range(n)), None)


def _check_count(info, num_classes):
    if len(info.names) != num_classes:
        logger.warning("Data set %r has %d classes but MODEL.ROI_HEADS.NUM_CLASSES is %d: "
                       "labels may be wrong", info.source, len(info.names), num_classes)
