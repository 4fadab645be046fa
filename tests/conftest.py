import importlib.util
import logging
import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")


# The demo model made tiny for 64x64 images (4x4 conv5 map, anchors 16 and 32 px x 3 ratios,
# VGG11, small fc layers) and a 3-iteration schedule: the real pipeline in seconds.
TINY_MODEL = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "MODEL.VGG.DEPTH", "11", "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "32", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
]  # fmt: skip
TINY_SCHEDULE = [
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",  # an untrained model still detects something
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "100",
]  # fmt: skip


def load_tool(name):
    """Import ``tools/<name>.py`` as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "frcnn_tool_" + name, os.path.join(REPO, "tools", name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loggers():
    yield None, logging.getLogger()
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            yield name, logger


@pytest.fixture(autouse=True)
def _logging_handlers_of_the_test():
    """Handlers a test adds (the tools run in-process call detectron2's ``setup_logger`` and
    ``logging.basicConfig``, whose stream handlers hold the test's captured, later closed,
    stdout/stderr) are removed after it, the loggers' propagation and level restored, and
    ``setup_logger``'s cache cleared, so that a later
    test's log records do not end in a "--- Logging error ---" on a closed stream."""
    before = {name: (list(logger.handlers), logger.propagate, logger.level)
              for name, logger in _loggers()}
    yield
    for name, logger in _loggers():
        handlers, propagate, level = before.get(name, ((), True, logging.NOTSET))
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
        # setup_logger(name=...) also stops propagation to the root logger, which would hide
        # a later test's records from assertLogs on the root
        logger.propagate, logger.level = propagate, level
    from detectron2.utils.logger import setup_logger

    setup_logger.cache_clear()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is much faster on busy shared cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def load_config(name, *opts):
    """An unfrozen config: frcnn_plugin's load_frcnn_config of configs/<name> + opts, on CPU."""
    from frcnn_plugin.config import load_frcnn_config

    cfg = load_frcnn_config(name if os.path.isabs(name) else os.path.join(CONFIGS, name), opts)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """Two small generated COCO-format data sets, registered as frcnn_test_{train,val}."""
    from frcnn_plugin.data import register_shapes_dataset

    root = tmp_path_factory.mktemp("shapes")
    register_shapes_dataset(
        "frcnn_test_train", str(root / "train"), 8, image_size=64, seed=0, min_size=12, max_size=32
    )
    register_shapes_dataset(
        "frcnn_test_val", str(root / "val"), 4, image_size=64, seed=1, min_size=12, max_size=32
    )
    return root
