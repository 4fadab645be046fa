"""Accuracy side by side: the plugin and its peers trained by the trainer users run, with the
same training data, order, schedule and initial weights, then AP / AP50 / AP75 on the same
held-out images.

Every model is trained by the plugin's :class:`~frcnn_plugin.engine.trainer.Trainer` (what
``tools/train_net.py`` runs: detectron2's ``DefaultTrainer`` with its ``SimpleTrainer`` /
``AMPTrainer`` step, optimizer, LR scheduler hook, metrics writers, and the plugin's
non-finite loss guard and atomic checkpoints), seeded as ``tools/train_net.py`` seeds it
(``SEED``), in an output folder of its own (checkpoints, ``metrics.json``, ``config.yaml``,
``inference/``). The only change is the model, in :class:`BenchmarkTrainer`:
:func:`~benchmarks.peers.build_benchmark_model`'s; for the ``plugin`` kind that is
the model ``tools/train_net.py`` builds, so a run of the plugin gives ``tools/train_net.py``'s
losses with the same keys. Evaluation is the trainer's own, after the last iteration
(``Trainer.test`` with :func:`~frcnn_plugin.engine.trainer.build_evaluator`'s evaluator) on
``DATASETS.TEST[0]``; the torchvision peer goes through
:class:`~benchmarks.peers.TorchvisionFasterRCNN`, whose outputs are detectron2
``Instances``, so the evaluation code is the same for all.
"""
import logging
import os
import random
import tempfile
import time
from typing import Dict, Sequence

import numpy as np
import torch

from detectron2.engine import HookBase
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from frcnn_plugin.config import with_keys
from frcnn_plugin.config_checks import check_output_dir, config_errors
from frcnn_plugin.engine.trainer import Trainer
from frcnn_plugin.modeling.precision import (
    apply_autocast,
    apply_precision,
    inference_precision,
    training_precision,
)

from .peers import TORCHVISION_AMP_MODULES, build_benchmark_model

__all__ = ["BenchmarkTrainer", "benchmark_config", "build_benchmark_trainer", "evaluate_bbox",
           "train_and_evaluate", "run_accuracy"]

logger = logging.getLogger(__name__)


def _rng_state():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _set_rng_state(state):
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])


class _StepClock(HookBase):
    """Seconds spent in the training steps (``run_step``: data, forward, backward, optimizer;
    not the checkpoints, evaluations and writers of the other hooks), and when the last one
    ended. The first hook: its ``before_step`` runs first and its ``after_step`` first."""

    def __init__(self):
        self.seconds, self.end, self._start = 0.0, None, None

    def before_step(self):
        self._start = time.perf_counter()

    def after_step(self):
        self.end = time.perf_counter()
        self.seconds += self.end - self._start


class BenchmarkTrainer(Trainer):
    """The plugin's :class:`~frcnn_plugin.engine.trainer.Trainer` training one of
    :data:`~benchmarks.peers.MODEL_KINDS`: only the model differs
    (:meth:`build_model`), and a clock hook measures the training steps.

    Every kind leaves the random generators (torch, numpy, Python) as ``tools/train_net.py``
    leaves them after building the plugin's model from the same config and seed, so that what
    is drawn afterwards does not depend on the model: the training sampler's seed (detectron2
    v0.6 draws it from numpy), the data loader's worker seeds and, with ``NUM_WORKERS`` 0, the
    augmentations. Every model sees the same training images in the same order.

    Args:
        cfg: the run's config (:func:`benchmark_config`); ``SEED`` seeds the weights.
        kind, init, pretrained: as :func:`~benchmarks.peers.build_benchmark_model`.
    """

    def __init__(self, cfg, kind="plugin", init="copied", pretrained=None):
        self.kind, self.init, self.pretrained = kind, init, pretrained
        self.model_info = None
        self.clock = _StepClock()
        super().__init__(cfg)

    def build_model(self, cfg):
        before = _rng_state()
        model, self.model_info = build_benchmark_model(
            cfg, self.kind, seed=cfg.SEED, init=self.init, pretrained=self.pretrained
        )
        if self.kind != "plugin":  # the draws of tools/train_net.py's model (class doc)
            _set_rng_state(before)
            build_model(cfg)
        # SOLVER.AMP / TEST.AMP as Trainer.build_model applies them, for every kind
        if self.kind == "torchvision":
            apply_autocast(model, training_precision(cfg), inference_precision(cfg),
                           paths=TORCHVISION_AMP_MODULES)
        else:
            apply_precision(cfg, model)
        logger.info("Model:\n%s", model)
        return model

    def build_hooks(self):
        hooks = super().build_hooks()
        hooks.insert(0, self.clock)
        return hooks


def benchmark_config(cfg, *, seed: int, output_dir: str, evaluate: bool = True):
    """The config of one benchmark run: ``cfg`` with ``SEED`` = ``seed``, ``OUTPUT_DIR`` =
    ``output_dir``, ``MODEL.WEIGHTS`` empty (every model starts from its seeded initialization,
    or from ``pretrained`` parts) and ``DATASETS.TEST`` = its first data set (none when not
    ``evaluate``)."""
    return with_keys(cfg, {
        "SEED": int(seed), "OUTPUT_DIR": output_dir, "MODEL.WEIGHTS": "",
        "DATASETS.TEST": tuple(cfg.DATASETS.TEST[:1]) if evaluate else (),
    })


def build_benchmark_trainer(cfg, kind: str = "plugin", *, init: str = "copied",
                            pretrained: Dict[str, torch.Tensor] = None) -> BenchmarkTrainer:
    """What ``tools/train_net.py`` does before training, for a :class:`BenchmarkTrainer`: the
    output folder checked, ``config.yaml`` written there, the random generators seeded with
    ``SEED`` and cuDNN's benchmark mode set as detectron2's ``default_setup`` does (one
    process), then the trainer built with config errors as :class:`ConfigError`."""
    check_output_dir(cfg.OUTPUT_DIR)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)
    torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
    with config_errors(cfg):
        return BenchmarkTrainer(cfg, kind, init=init, pretrained=pretrained)


def evaluate_bbox(cfg, model, output_dir: str) -> Dict[str, float]:
    """The AP table ("bbox") of ``model`` on ``DATASETS.TEST[0]`` by the trainer's own test
    path: ``Trainer.test`` (its checked test loader, ``inference_on_dataset``) with the
    evaluator :func:`~frcnn_plugin.engine.trainer.build_evaluator` chooses, writing to
    ``output_dir``."""
    name = cfg.DATASETS.TEST[0]
    if len(cfg.DATASETS.TEST) != 1:
        cfg = with_keys(cfg, {"DATASETS.TEST": (name,)})
    evaluator = Trainer.build_evaluator(cfg, name, output_folder=output_dir)
    return dict(Trainer.test(cfg, model, [evaluator]).get("bbox", {}))


def train_and_evaluate(cfg, kind: str, *, seed: int = 0, init: str = "copied",
                       output_dir: str = None, save_to: str = None, evaluate: bool = True,
                       test_variants: Dict[str, Dict[str, object]] = None,
                       pretrained: Dict[str, torch.Tensor] = None) -> Dict[str, object]:
    """Train one model kind for ``SOLVER.MAX_ITER`` iterations with the plugin's trainer
    (:class:`BenchmarkTrainer`), which evaluates it after the last iteration.

    Args:
        cfg: the plugin's config (the peers are derived from it); its training data set is
            ``DATASETS.TRAIN``, loaded as ``tools/train_net.py`` loads it.
        kind (str): "plugin", "torchvision" or "d2".
        seed (int): the run's ``SEED``: the weights, the sampler's order, the augmentations.
        init (str): the peers' initial weights, "copied" from the plugin or their "own" (see
            :func:`~benchmarks.peers.build_benchmark_model`).
        output_dir (str): the run's ``OUTPUT_DIR`` (checkpoints, ``metrics.json``,
            ``config.yaml``, ``inference/``); a new temporary folder if None.
        save_to (str): also save the trained weights there (``{"model": state_dict}``).
        evaluate (bool): evaluate (else "bbox" is empty).
        test_variants (dict): name -> test-time config overrides (e.g.
            ``{"MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5}``): the trained weights are also
            evaluated in a model built with those keys (no retraining), written to
            ``output_dir/inference_<name>``.
        pretrained (dict): backbone and fc6/fc7 weights loaded over the initialization (see
            :func:`~benchmarks.peers.build_benchmark_model`).

    Returns:
        dict: "bbox" (the evaluator's AP table), "train_time_s" (the training steps),
        "eval_time_s", "iters", "last_losses" (the last iteration's loss terms, as in
        ``metrics.json``), "model", "output_dir", and with ``test_variants`` "test_variants"
        (name -> AP table).
    """
    output_dir = output_dir or tempfile.mkdtemp(prefix="frcnn_bench_{}_".format(kind))
    cfg = benchmark_config(cfg, seed=seed, output_dir=output_dir, evaluate=evaluate)
    trainer = build_benchmark_trainer(cfg, kind, init=init, pretrained=pretrained)
    trainer.resume_or_load(resume=False)
    results = trainer.train() or {}
    done = time.perf_counter()
    last = {k: float(v) for k, (v, _) in trainer.storage.latest().items()
            if k.startswith("loss")}
    if save_to:
        torch.save({"model": trainer.model.state_dict()}, save_to)
    result = {
        "bbox": dict(results.get("bbox", {})),
        "train_time_s": trainer.clock.seconds,
        "iters": cfg.SOLVER.MAX_ITER,
        "last_losses": last,
        "model": trainer.model_info,
        "output_dir": output_dir,
    }
    if not evaluate:
        return result
    result["eval_time_s"] = done - (trainer.clock.end or done)
    logger.warning("%s: %s", kind, {k: round(v, 2) for k, v in result["bbox"].items()})
    if test_variants:
        result["test_variants"] = {}
        state = trainer.model.state_dict()
        for name, overrides in test_variants.items():
            vcfg = with_keys(cfg, overrides)
            variant, _ = build_benchmark_model(vcfg, kind, seed=seed, init=init)
            variant.load_state_dict(state)
            bbox = evaluate_bbox(vcfg, variant, os.path.join(output_dir, "inference_" + name))
            result["test_variants"][name] = bbox
            logger.warning("%s %s: %s", kind, name, {k: round(v, 2) for k, v in bbox.items()})
    return result


def run_accuracy(cfg, kinds: Sequence[str], *, seed: int = 0,
                 output_dir: str = None) -> Dict[str, Dict[str, object]]:
    """:func:`train_and_evaluate` for each kind, on ``DATASETS.TRAIN`` -> ``DATASETS.TEST[0]``,
    each in ``output_dir/<kind>`` (temporary folders if None)."""
    return {
        kind: train_and_evaluate(
            cfg, kind, seed=seed,
            output_dir=os.path.join(output_dir, kind) if output_dir else None)
        for kind in kinds
    }
