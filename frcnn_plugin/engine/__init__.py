from .trainer import Trainer, build_evaluator, has_detectron2_cpp_ops  # noqa: F401
