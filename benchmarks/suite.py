"""One benchmark run: inputs, the plugin and its peers measured in turn, ratios, targets.

:func:`run_benchmark` returns a JSON-ready dict; :func:`~.report.format_report` turns it into the
tables printed by ``tools/benchmark.py``. Ratios are always plugin / peer from the same run.
"""
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from frcnn_plugin.cli import load_config
from frcnn_plugin.errors import ConfigError
from frcnn_plugin.lazy import is_lazy_config

from .accuracy import run_accuracy
from .inputs import (
    SYNTHETIC_COCO_NUM_CLASSES,
    dataset_dicts,
    map_inputs,
    register_synthetic_coco,
)
from .measure import EXPORTED_KIND_SEPARATOR, run_interleaved
from .scaling import plot_scaling, run_scaling, scaling_ratios
from .stats import machine_info
from .variants import run_variants, variant_ratios, variant_target

__all__ = ["BenchmarkOptions", "BenchmarkOptionError", "TASKS", "TARGETS", "setup_config",
           "run_benchmark"]

TASKS = ("train", "inference", "data", "accuracy", "variants", "scaling")
# The targets, reported (never asserted): ratios plugin / torchvision and the share of
# a training iteration spent outside the network's conv / fc / pooling layers.
TARGETS = {"train_step_vs_torchvision": 0.9, "inference_vs_torchvision": 0.9,
           "train_outside_network_fraction": 0.10}
SCHEMA = "frcnn_plugin.benchmark/1"  # the JSON format's name (kept: the files of earlier runs)


class BenchmarkOptionError(ValueError):
    """Options that cannot be run (named in the message)."""


@dataclass
class BenchmarkOptions:
    """What to run; see ``tools/benchmark.py --help``."""

    task: str = "train"
    iters: int = 3
    warmup: int = 1
    repeats: int = 3
    peers: Sequence[str] = ("torchvision", "d2")
    device: str = "cpu"
    threads: int = 0  # 0: torch's current setting
    synthetic: Optional[str] = None  # None or "coco"
    dataset: Optional[str] = None
    image_size: Optional[Tuple[int, int]] = None
    num_images: int = 16
    seed: int = 0
    amp: bool = False
    isolate: bool = True
    config_file: str = ""
    overrides: List[str] = field(default_factory=list)
    # inference: the plugin model also run by these export backends ("torchscript", "onnx")
    backends: Sequence[str] = ()
    # the variants task: variant names (see benchmarks.tricks), fc6/fc7 ranks of
    # the "svd" trick, trained weights (None: train the plugin first)
    variants: Optional[Sequence[str]] = None
    svd_ranks: Sequence[int] = (1024, 256)
    weights: Optional[str] = None
    # the scaling task (see benchmarks.scaling): the points of each sweep (empty:
    # that sweep skipped), and an optional PNG plot of them
    sizes: Sequence[int] = (300, 450, 600, 800, 1000)
    proposals: Sequence[int] = (100, 300, 1000, 2000)
    gt_boxes: Sequence[int] = (1, 10, 50, 100)
    plot: Optional[str] = None


def setup_config(config_file: str, overrides: Sequence[str], device: str):
    """The config as every tool reads it (:func:`frcnn_plugin.cli.load_config`: get_cfg +
    add_frcnn_config + the file + KEY VALUE overrides, checked), on ``device``; an unfrozen copy
    (a task may set the number of classes of its synthetic data)."""
    if is_lazy_config(config_file):
        raise ConfigError(
            "{}: a Python config; the benchmark builds its peers (torchvision, detectron2's "
            "heads) from the YAML keys, so it reads YAML configs only. Allowed: the YAML twin "
            "(docs/lazyconfig.md lists them, e.g. "
            "configs/vgg16_frcnn_shapes_demo.yaml for configs/lazy/vgg16_frcnn_shapes_demo.py)"
            .format(config_file))
    cfg = load_config(config_file, overrides, device=device).clone()
    cfg.defrost()
    return cfg


def _dataset_name(cfg, options: BenchmarkOptions) -> str:
    if options.dataset:
        return options.dataset
    names = cfg.DATASETS.TEST if options.task == "inference" else cfg.DATASETS.TRAIN
    if not names:
        raise BenchmarkOptionError("No data set: give --dataset NAME or --synthetic coco, or "
                                   "set DATASETS.TRAIN / DATASETS.TEST in the config")
    return names[0]


def _prepare_inputs(cfg, options: BenchmarkOptions, tmpdir: str):
    """(input description, config changes, spec entries with the inputs)."""
    changes = {}
    if options.synthetic == "coco":
        if cfg.MODEL.ROI_HEADS.NUM_CLASSES != SYNTHETIC_COCO_NUM_CLASSES:
            changes["MODEL.ROI_HEADS.NUM_CLASSES"] = [cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                                                      SYNTHETIC_COCO_NUM_CLASSES]
            cfg.MODEL.ROI_HEADS.NUM_CLASSES = SYNTHETIC_COCO_NUM_CLASSES
        name = register_synthetic_coco("frcnn_benchmark_synthetic_coco",
                                       os.path.join(tmpdir, "synthetic_coco"),
                                       options.num_images, seed=options.seed,
                                       image_size=options.image_size)
        source = "synthetic coco" + (" {}x{}".format(*options.image_size)
                                     if options.image_size else " (COCO size mix)")
    elif options.synthetic:
        raise BenchmarkOptionError("--synthetic {!r}; allowed: coco".format(options.synthetic))
    else:
        name = _dataset_name(cfg, options)
        source = "dataset " + name
    is_train = options.task in ("train", "data")
    dicts = dataset_dicts(cfg, name, is_train=is_train)
    info = {"source": source, "dataset": name, "dataset_images": len(dicts)}
    if options.task == "data":
        return info, changes, {"dataset_dicts": dicts}
    if options.task == "train":
        batch = cfg.SOLVER.IMS_PER_BATCH
        needed = options.warmup + options.iters * options.repeats
        n_batches = max(1, min(needed, options.num_images // batch))
        images = map_inputs(cfg, dicts, n_batches * batch, True, seed=options.seed)
        batches = [images[i * batch:(i + 1) * batch] for i in range(n_batches)]
        info.update(images_per_iter=batch, distinct_batches=n_batches)
        entries = {"batches": batches}
    else:
        images = map_inputs(cfg, dicts, min(options.num_images, len(dicts)), False,
                            seed=options.seed)
        info.update(images_per_iter=1, distinct_images=len(images))
        entries = {"images": images}
    sizes = [tuple(x["image"].shape[-2:]) for x in images]
    info["input_sizes_hw"] = sorted({"{}x{}".format(*s) for s in sizes})
    info["mean_input_pixels"] = sum(h * w for h, w in sizes) / len(sizes)
    if "instances" in images[0]:
        info["mean_gt_boxes"] = sum(len(x["instances"]) for x in images) / len(images)
    return info, changes, entries


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0 or (isinstance(b, float) and math.isnan(b)):
        return None
    return a / b


def _round_times(task: str, result: dict) -> List[float]:
    """Per round: seconds per iteration (train) or median latency (inference)."""
    if task == "train":
        return [1.0 / v for v in result["per_round_iters_per_s"]]
    return list(result["per_round_median_s"])


def _ratios(task: str, models: Dict[str, dict]) -> Dict[str, Dict[str, Optional[float]]]:
    """plugin / peer for every figure of the task."""
    plugin = models.get("plugin")
    out = {}
    for peer, res in models.items():
        if peer == "plugin" or plugin is None:
            continue
        if task == "accuracy":
            out[peer] = {k: _ratio(plugin["bbox"].get(k), res["bbox"].get(k))
                         for k in ("AP", "AP50", "AP75")}
            continue
        r = {"peak_memory": _ratio(plugin["memory"]["peak_mb"], res["memory"]["peak_mb"])}
        if task in ("train", "inference"):
            # rounds are interleaved: the ratio within each round, then the median over rounds
            a, b = _round_times(task, plugin), _round_times(task, res)
            r["paired_rounds_median"] = statistics.median(x / y for x, y in zip(a, b))
        if task == "train":
            r["step_time_median"] = _ratio(plugin["step_time_s"]["median"],
                                           res["step_time_s"]["median"])
            r["step_time_p90"] = _ratio(plugin["step_time_s"]["p90"], res["step_time_s"]["p90"])
            r["iters_per_s_median"] = _ratio(plugin["iters_per_s"]["median"],
                                             res["iters_per_s"]["median"])
        elif task == "inference":
            r["latency_median"] = _ratio(plugin["latency_s"]["median"],
                                         res["latency_s"]["median"])
            r["latency_p90"] = _ratio(plugin["latency_s"]["p90"], res["latency_s"]["p90"])
        out[peer] = r
    return out


def _targets(task: str, models: Dict[str, dict], ratios) -> Dict[str, dict]:
    out = {}
    tv = ratios.get("torchvision", {})
    if task == "train":
        if tv.get("step_time_median") is not None:
            v = tv["step_time_median"]
            out["train_step_vs_torchvision"] = {
                "value": v, "target": TARGETS["train_step_vs_torchvision"],
                "met": v <= TARGETS["train_step_vs_torchvision"]}
        frac = models["plugin"]["breakdown"]["mean_s"]["outside_fraction"]
        if frac is not None:
            out["train_outside_network_fraction"] = {
                "value": frac, "target": TARGETS["train_outside_network_fraction"],
                "met": frac <= TARGETS["train_outside_network_fraction"]}
    elif task == "inference" and tv.get("latency_median") is not None:
        v = tv["latency_median"]
        out["inference_vs_torchvision"] = {
            "value": v, "target": TARGETS["inference_vs_torchvision"],
            "met": v <= TARGETS["inference_vs_torchvision"]}
    return out


def run_benchmark(options: BenchmarkOptions, cfg=None, log=print) -> Dict[str, object]:
    """Run ``options.task`` for the plugin and each peer; returns the JSON-ready results."""
    if options.task not in TASKS:
        raise BenchmarkOptionError("task {!r}; allowed: {}".format(options.task, TASKS))
    if cfg is None:
        cfg = setup_config(options.config_file, options.overrides, options.device)
    if options.iters < 1 or options.repeats < 1 or options.warmup < 0:
        raise BenchmarkOptionError("--iters and --repeats must be >= 1 and --warmup >= 0, got "
                                   "{}, {}, {}".format(options.iters, options.repeats,
                                                       options.warmup))
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    threads = torch.get_num_threads()
    device = torch.device(options.device)
    if options.amp and device.type != "cuda":
        raise BenchmarkOptionError(
            "--amp (float16 autocast, GradScaler) needs a CUDA device; allowed on the CPU: bf16 "
            "through the config keys, SOLVER.AMP.ENABLED True SOLVER.AMP.PRECISION bf16 "
            "(training) or TEST.AMP.ENABLED True TEST.AMP.PRECISION bf16 (inference), given "
            "to every model alike")
    started = time.time()
    load_before = machine_info(device)["load_avg_1_5_15"]
    changes = {} if options.task == "variants" else {  # variants: weights in settings.input
        "MODEL.WEIGHTS": [cfg.MODEL.WEIGHTS, "(random init, seeded; peers copy it)"]}
    backends = [b for b in options.backends if b != "eager"]
    if backends and (options.task != "inference" or device.type != "cpu"):
        raise BenchmarkOptionError(
            "--backend {} times exported models: allowed with --task inference on --device cpu "
            "only".format(",".join(backends)))
    kinds = (["plugin"] + ["plugin" + EXPORTED_KIND_SEPARATOR + b for b in backends]
             + [p for p in options.peers if p != "none"])
    if options.task == "data":
        kinds = ["plugin"]  # one loader: the models do not take part
    results = {"schema": SCHEMA, "task": options.task, "command": " ".join(sys.argv),
               "options": asdict(options)}
    with tempfile.TemporaryDirectory(prefix="frcnn_bench_") as tmpdir:
        if options.task == "accuracy":
            cfg.freeze()
            models = run_accuracy(cfg, kinds, seed=options.seed,
                                  output_dir=os.path.join(tmpdir, "eval"))
            inputs = {"train": list(cfg.DATASETS.TRAIN), "test": list(cfg.DATASETS.TEST),
                      "max_iter": cfg.SOLVER.MAX_ITER, "images_per_iter": cfg.SOLVER.IMS_PER_BATCH}
        elif options.task == "variants":
            cfg.freeze()
            models, inputs = run_variants(cfg, options, tmpdir, log=log)
        elif options.task == "scaling":
            if cfg.MODEL.ROI_HEADS.NUM_CLASSES != SYNTHETIC_COCO_NUM_CLASSES:
                changes["MODEL.ROI_HEADS.NUM_CLASSES"] = [cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                                                          SYNTHETIC_COCO_NUM_CLASSES]
            cfg.freeze()
            points, inputs = run_scaling(cfg, options, tmpdir, log=log)
            models = {}
        else:
            inputs, more, entries = _prepare_inputs(cfg, options, tmpdir)
            changes.update(more)
            cfg.freeze()
            specs = [dict(entries, cfg=cfg, kind=kind, task=options.task, warmup=options.warmup,
                          threads=threads, seed=options.seed, amp=options.amp) for kind in kinds]
            models = run_interleaved(specs, iters=options.iters, repeats=options.repeats,
                                     isolate=options.isolate, log=log)
    if options.task == "variants":
        ratios = variant_ratios(models)
        targets = variant_target(models, ratios)
    elif options.task == "scaling":
        ratios, targets = scaling_ratios(points), {}
        results["points"] = points
        if options.plot:
            results["plot"] = plot_scaling(points, options.plot)
    else:
        ratios = _ratios(options.task, models)
        targets = _targets(options.task, models, ratios)
    machine = machine_info(device)
    machine["load_avg_before"] = load_before
    machine["load_avg_after"] = machine.pop("load_avg_1_5_15")
    results.update(
        config_file=options.config_file,
        overrides=list(options.overrides),
        config_changes=changes,
        settings={"device": str(device), "threads": threads, "iters": options.iters,
                  "warmup": options.warmup, "repeats": options.repeats, "amp": options.amp,
                  "seed": options.seed, "isolated_processes": options.isolate,
                  "order": "rounds interleaved across models, order rotated each round",
                  "input": inputs},
        machine=machine,
        models=models,
        ratios=ratios,
        targets=targets,
        wall_time_s=time.time() - started,
    )
    return results
