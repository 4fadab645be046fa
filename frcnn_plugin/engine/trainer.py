"""detectron2's ``DefaultTrainer`` with the evaluator chosen from the data set's metadata."""
import logging
import os

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

from ..data import prepare_dataset

__all__ = ["Trainer", "build_evaluator", "has_detectron2_cpp_ops"]

logger = logging.getLogger(__name__)

EVALUATOR_TYPES = ("coco", "pascal_voc")


def has_detectron2_cpp_ops() -> bool:
    """False when detectron2's C++ extension is missing or is the set-up's placeholder."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "IS_FRCNN_PLACEHOLDER", False)


def build_evaluator(cfg, dataset_name, output_folder=None):
    """Build the evaluator that the data set's ``evaluator_type`` metadata names.

    ``"coco"`` -> :class:`COCOEvaluator` (boxes; its fast C++ path only when detectron2's C++
    ops are present), ``"pascal_voc"`` -> :class:`PascalVOCDetectionEvaluator`.
    """
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    prepare_dataset(dataset_name)
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    if evaluator_type == "coco":
        return COCOEvaluator(
            dataset_name,
            tasks=("bbox",),
            distributed=True,
            output_dir=output_folder,
            use_fast_impl=has_detectron2_cpp_ops(),
        )
    if evaluator_type == "pascal_voc":
        return PascalVOCDetectionEvaluator(dataset_name)
    raise ValueError(
        "No evaluator for data set {!r}: its metadata evaluator_type is {!r}; allowed: {}. "
        "Register it with one of these types (e.g. register_coco_instances) or remove it from "
        "DATASETS.TEST.".format(dataset_name, evaluator_type, list(EVALUATOR_TYPES))
    )


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` that builds the evaluator from the data set's ``evaluator_type``."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)


    def train(self):
        """Train; returns the results of the last evaluation (the one after the final
        iteration), which detectron2's DefaultTrainer only returns with TEST.EXPECTED_RESULTS."""
        super().train()
        return getattr(self, "_last_eval_results", None)
