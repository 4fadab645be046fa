from .checkpoint import AtomicCheckpointer  # noqa: F401
from .hooks import ReplicaSyncCheck  # noqa: F401
from .launch import DistributedTrainingError, launch  # noqa: F401
from .train_loop import NonFiniteLossGuard  # noqa: F401
from .trainer import Trainer, build_evaluator, has_detectron2_cpp_ops  # noqa: F401
from .vis_hook import PredictionVisHook, maybe_add_vis_hook  # noqa: F401
