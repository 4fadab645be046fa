"""Accuracy side by side: the same training data, order, schedule and initial weights for the
plugin and its peers, then AP / AP50 / AP75 from detectron2's ``COCOEvaluator`` on the same
held-out images.

Every model is trained by the same plain loop (detectron2's optimizer and LR scheduler from
``SOLVER.*``, the config's train loader with a seeded sampler) and evaluated by
``inference_on_dataset`` on ``DATASETS.TEST[0]``; the torchvision peer goes through
:class:`~frcnn_plugin.benchmark.peers.TorchvisionFasterRCNN`, whose outputs are detectron2
``Instances``, so the evaluation code is the same for all.
"""
import logging
import os
import tempfile
import time
from typing import Dict, Sequence

import torch

__all__ = ["train_and_evaluate", "run_accuracy"]

logger = logging.getLogger(__name__)


def _coco_evaluator(cfg, dataset_name: str, output_dir: str):
    from detectron2.evaluation import COCOEvaluator

    try:
        from frcnn_plugin.engine.trainer import has_detectron2_cpp_ops

        fast = has_detectron2_cpp_ops()
    except ImportError:  # pragma: no cover
        fast = False
    return COCOEvaluator(dataset_name, tasks=("bbox",), distributed=False,
                         output_dir=output_dir, use_fast_impl=fast)


def _evaluate(cfg, model, output_dir: str) -> Dict[str, float]:
    from detectron2.data import build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from frcnn_plugin.data import prepare_dataset

    test_name = cfg.DATASETS.TEST[0]
    prepare_dataset(test_name)
    evaluator = _coco_evaluator(cfg, test_name, output_dir)
    results = inference_on_dataset(model, build_detection_test_loader(cfg, test_name), evaluator)
    return dict(results.get("bbox", {}))


def train_and_evaluate(cfg, kind: str, dataset_dicts, *, seed: int = 0, init: str = "copied",
                       log_period: int = 20, output_dir: str = None, save_to: str = None,
                       evaluate: bool = True,
                       test_variants: Dict[str, Dict[str, object]] = None,
                       pretrained: Dict[str, torch.Tensor] = None) -> Dict[str, object]:
    """Train one model kind for ``SOLVER.MAX_ITER`` iterations, then evaluate it.

    Args:
        cfg: the plugin's config (the peers are derived from it).
        kind (str): "plugin", "torchvision" or "d2".
        dataset_dicts (list[dict]): the training set (the same list for every model).
        seed (int): seeds the weights, the sampler's order and the augmentations.
        init (str): the peers' initial weights, "copied" from the plugin or their "own" (see
            :func:`~frcnn_plugin.benchmark.peers.build_benchmark_model`).
        save_to (str): also save the trained weights there (``{"model": state_dict}``).
        evaluate (bool): evaluate (else "bbox" is empty).
        test_variants (dict): name -> test-time config overrides (e.g.
            ``{"MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5}``): the trained weights are also
            evaluated in a model built with those keys (no retraining).
        pretrained (dict): backbone and fc6/fc7 weights loaded over the initialization (see
            :func:`~frcnn_plugin.benchmark.peers.build_benchmark_model`).

    Returns:
        dict: "bbox" (COCOEvaluator's AP table), "train_time_s", "iters", "last_losses", and
        with ``test_variants`` "test_variants" (name -> AP table).
    """
    from detectron2.data import build_detection_train_loader
    from detectron2.data.samplers import TrainingSampler
    from detectron2.solver import build_lr_scheduler, build_optimizer
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import EventStorage

    from frcnn_plugin.config import with_keys
    from frcnn_plugin.data import FRCNNDatasetMapper

    from .peers import build_benchmark_model

    model, info = build_benchmark_model(cfg, kind, seed=seed, init=init, pretrained=pretrained)
    seed_all_rng(seed)
    loader = build_detection_train_loader(
        cfg, mapper=FRCNNDatasetMapper(cfg, True), dataset=list(dataset_dicts),
        sampler=TrainingSampler(len(dataset_dicts), seed=seed),
    )
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    model.train()
    start, last = time.perf_counter(), {}
    with EventStorage(0) as storage:
        for it, batch in zip(range(cfg.SOLVER.MAX_ITER), loader):
            storage.iter = it
            losses = model(batch)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError("{}: non-finite loss at iteration {}: {}".format(
                    kind, it, {k: float(v) for k, v in losses.items()}))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            last = {k: float(v.detach()) for k, v in losses.items()}
            if log_period and (it + 1) % log_period == 0:
                logger.warning("%s iter %d/%d loss %.3f (%s) %.1f s", kind, it + 1,
                               cfg.SOLVER.MAX_ITER, float(loss.detach()),
                               ", ".join("{} {:.3f}".format(k, v) for k, v in last.items()),
                               time.perf_counter() - start)
    train_time = time.perf_counter() - start
    if save_to:
        torch.save({"model": model.state_dict()}, save_to)
    if not evaluate:
        return {"bbox": {}, "train_time_s": train_time, "iters": cfg.SOLVER.MAX_ITER,
                "last_losses": last, "model": info}
    out = output_dir or tempfile.mkdtemp(prefix="frcnn_bench_eval_")
    start = time.perf_counter()
    bbox = _evaluate(cfg, model, os.path.join(out, kind))
    logger.warning("%s: %s", kind, {k: round(v, 2) for k, v in bbox.items()})
    result = {
        "bbox": bbox,
        "train_time_s": train_time,
        "eval_time_s": time.perf_counter() - start,
        "iters": cfg.SOLVER.MAX_ITER,
        "last_losses": last,
        "model": info,
    }
    if test_variants:
        result["test_variants"] = {}
        state = model.state_dict()
        for name, overrides in test_variants.items():
            vcfg = with_keys(cfg, overrides)
            variant, _ = build_benchmark_model(vcfg, kind, seed=seed, init=init)
            variant.load_state_dict(state)
            result["test_variants"][name] = _evaluate(vcfg, variant,
                                                      os.path.join(out, kind + "_" + name))
            logger.warning("%s %s: %s", kind, name, {
                k: round(v, 2) for k, v in result["test_variants"][name].items()})
    return result


def run_accuracy(cfg, kinds: Sequence[str], *, seed: int = 0, output_dir: str = None,
                 log_period: int = 20) -> Dict[str, Dict[str, object]]:
    """:func:`train_and_evaluate` for each kind, on ``DATASETS.TRAIN`` -> ``DATASETS.TEST[0]``."""
    from ..data.checks import load_train_dataset_dicts

    dicts = load_train_dataset_dicts(cfg)
    return {
        kind: train_and_evaluate(cfg, kind, dicts, seed=seed, output_dir=output_dir,
                                 log_period=log_period)
        for kind in kinds
    }
