"""How cost grows (issue 13): time and peak memory of the plugin and its peers against the input
size, the number of test proposals and the number of ground-truth boxes.

Three sweeps; every point is measured as the ``inference`` and ``train`` tasks measure (a fresh
process per model, so the peak memory is the point's own; untimed warm-up; interleaved rounds;
the stage timers of :mod:`.measure`):

- ``size``: inference (batch 1) on synthetic COCO-shaped images with short side S and long side
  round(5 S / 3) (600 -> 1000), shown at that size (``INPUT.MIN_SIZE_TEST`` S,
  ``INPUT.MAX_SIZE_TEST`` the long side: no resizing);
- ``proposals``: inference at the base size with ``MODEL.RPN.POST_NMS_TOPK_TEST`` N
  (``PRE_NMS_TOPK_TEST`` raised to N where smaller);
- ``gt_boxes``: training iterations (one image per iteration) at the base size on images with
  exactly K boxes each.

Each point reports the median time, the time in the network's layers (convolutions, RoI
pooling, fc layers: ``breakdown["network"]``), the time outside them and its share, and the
peak memory; each sweep also reports every figure's growth from its first point. What grows
faster than the network's own compute shows as a rising outside share.
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from frcnn_plugin.config import with_keys

from .inputs import SYNTHETIC_COCO_NUM_CLASSES, dataset_dicts, map_inputs, register_synthetic_coco
from .measure import run_interleaved

__all__ = ["SWEEPS", "DEFAULT_SIZES", "DEFAULT_PROPOSALS", "DEFAULT_GT_BOXES", "size_hw",
           "SWEEP_LABELS", "sweep_points", "run_scaling", "scaling_ratios", "plot_scaling"]

SWEEPS = ("size", "proposals", "gt_boxes")
DEFAULT_SIZES = (300, 450, 600, 800, 1000)
DEFAULT_PROPOSALS = (100, 300, 1000, 2000)
DEFAULT_GT_BOXES = (1, 10, 50, 100)
LONG_OVER_SHORT = 5.0 / 3.0  # the paper's 600 x 1000


def size_hw(short_side: int) -> Tuple[int, int]:
    """(height, width) of the size sweep's images: the short side and round(5/3 of it)."""
    return short_side, int(round(short_side * LONG_OVER_SHORT))


def sweep_points(sizes: Sequence[int], proposals: Sequence[int], gt_boxes: Sequence[int],
                 base_hw: Tuple[int, int]) -> List[dict]:
    """The points to measure, each ``{"sweep", "value", "task", "image_hw", "overrides",
    "boxes_per_image"}``. ``overrides`` are config keys set for that point only."""
    points = []
    for s in sizes:
        h, w = size_hw(s)
        points.append({"sweep": "size", "value": s, "task": "inference", "image_hw": (h, w),
                       "overrides": {"INPUT.MIN_SIZE_TEST": h, "INPUT.MAX_SIZE_TEST": w},
                       "boxes_per_image": None})
    h, w = base_hw
    shown = {"INPUT.MIN_SIZE_TEST": min(h, w), "INPUT.MAX_SIZE_TEST": max(h, w)}
    for n in proposals:
        points.append({"sweep": "proposals", "value": n, "task": "inference", "image_hw": (h, w),
                       "overrides": dict(shown, **{"MODEL.RPN.POST_NMS_TOPK_TEST": n}),
                       "boxes_per_image": None})
    for k in gt_boxes:
        points.append({"sweep": "gt_boxes", "value": k, "task": "train", "image_hw": (h, w),
                       "overrides": {"INPUT.MIN_SIZE_TRAIN": (min(h, w),),
                                     "INPUT.MAX_SIZE_TRAIN": max(h, w),
                                     "SOLVER.IMS_PER_BATCH": 1},
                       "boxes_per_image": k})
    return points


def _point_config(cfg, point: dict):
    overrides = dict(point["overrides"])
    if point["sweep"] == "proposals":
        overrides["MODEL.RPN.PRE_NMS_TOPK_TEST"] = max(cfg.MODEL.RPN.PRE_NMS_TOPK_TEST,
                                                       point["value"])
    return with_keys(cfg, overrides)


def _summary(task: str, result: dict) -> dict:
    mean = result["breakdown"]["mean_s"]
    time_key = "step_time_s" if task == "train" else "latency_s"
    total = mean.get("total") if task == "train" else mean.get("forward")
    return {
        "time_s": result[time_key]["median"],
        "time_p90_s": result[time_key]["p90"],
        # the breakdown pass's means (timed iterations), so that network + outside = total
        "mean_total_s": total,
        "network_s": mean.get("network"),
        "outside_s": mean.get("outside_network"),
        "outside_fraction": mean.get("outside_fraction"),
        "backward_s": mean.get("backward"),
        "optimizer_s": mean.get("optimizer"),
        "peak_mb": result["memory"]["peak_mb"],
        "detections_per_image": result.get("detections_per_image"),
        "proposals_per_image": result.get("proposals_per_image"),
    }


def run_scaling(cfg, options, tmpdir: str, log=print):
    """The scaling task; returns (points with their models' summaries, input description).

    ``options``: a :class:`~.suite.BenchmarkOptions`; its ``sizes``, ``proposals``, ``gt_boxes``
    choose the points (empty: that sweep is skipped), ``image_size`` the base size (default
    600 x 1000), ``num_images`` the distinct images per point, ``peers`` the models next to the
    plugin, ``iters`` / ``repeats`` / ``warmup`` the timing.
    """
    base_hw = tuple(options.image_size) if options.image_size else (600, 1000)
    kinds = ["plugin"] + [p for p in options.peers if p != "none"]
    threads = torch.get_num_threads()
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = SYNTHETIC_COCO_NUM_CLASSES
    cfg.freeze()
    points = sweep_points(options.sizes, options.proposals, options.gt_boxes, base_hw)
    for i, point in enumerate(points):
        pcfg = _point_config(cfg, point)
        name = register_synthetic_coco(
            "frcnn_benchmark_scaling", os.path.join(tmpdir, "scaling_{}".format(i)),
            options.num_images, seed=options.seed, image_size=point["image_hw"],
            boxes_per_image=point["boxes_per_image"])
        is_train = point["task"] == "train"
        dicts = dataset_dicts(pcfg, name, is_train=is_train)
        images = map_inputs(pcfg, dicts, min(options.num_images, len(dicts)), is_train,
                            seed=options.seed)
        shown = sorted({tuple(x["image"].shape[-2:]) for x in images})
        entries = {"batches": [[x] for x in images]} if is_train else {"images": images}
        specs = [dict(entries, cfg=pcfg, kind=kind, task=point["task"], warmup=options.warmup,
                      threads=threads, seed=options.seed, amp=False) for kind in kinds]
        log("[benchmark] scaling {} = {} ({}, input {})".format(
            point["sweep"], point["value"], point["task"],
            ", ".join("{}x{}".format(*s) for s in shown)))
        measured = run_interleaved(specs, iters=options.iters, repeats=options.repeats,
                                   isolate=options.isolate, log=log)
        point["input_hw"] = ["{}x{}".format(*s) for s in shown]
        if is_train:
            point["mean_gt_boxes"] = sum(len(x["instances"]) for x in images) / len(images)
        point["image_hw"] = list(point["image_hw"])
        point["models"] = {k: _summary(point["task"], measured[k]) for k in kinds}
    _add_growth(points)
    inputs = {"source": "synthetic coco ({} classes)".format(SYNTHETIC_COCO_NUM_CLASSES),
              "base_image_hw": list(base_hw), "distinct_images": options.num_images,
              "images_per_iter": 1, "sizes": list(options.sizes),
              "proposals": list(options.proposals), "gt_boxes": list(options.gt_boxes)}
    return points, inputs


def _add_growth(points: List[dict]):
    """Each model's figures at every point divided by the same figures at the sweep's first
    point (``growth``)."""
    first: Dict[str, dict] = {}
    for p in points:
        ref = first.setdefault(p["sweep"], p)
        for kind, m in p["models"].items():
            r = ref["models"].get(kind, {})
            m["growth"] = {key: _div(m.get(key), r.get(key))
                           for key in ("time_s", "network_s", "outside_s", "peak_mb")}


def _div(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def scaling_ratios(points: List[dict]) -> Dict[str, Dict[str, dict]]:
    """plugin / peer time and peak memory at every point: ``{"<sweep>=<value>": {peer: {...}}}``."""
    out = {}
    for p in points:
        plugin = p["models"].get("plugin")
        if plugin is None:
            continue
        out["{}={}".format(p["sweep"], p["value"])] = {
            kind: {"time": _div(plugin["time_s"], m["time_s"]),
                   "peak_memory": _div(plugin["peak_mb"], m["peak_mb"])}
            for kind, m in p["models"].items() if kind != "plugin"}
    return out


SWEEP_LABELS = {"size": "short side (px)", "proposals": "test proposals",
                "gt_boxes": "GT boxes per image (training)"}


def plot_scaling(points: List[dict], path: str):
    """Time and peak memory against each sweep's variable, one line per model: a PNG at
    ``path`` (matplotlib's Agg canvas; no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: matplotlib (--plot)
    from matplotlib.figure import Figure

    sweeps = [s for s in SWEEPS if any(p["sweep"] == s for p in points)]
    if not sweeps:
        raise ValueError("no point to plot")
    fig = Figure(figsize=(4.2 * len(sweeps), 6.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(sweeps), squeeze=False)
    for col, sweep in enumerate(sweeps):
        pts = [p for p in points if p["sweep"] == sweep]
        kinds = list(pts[0]["models"])
        for i, kind in enumerate(kinds):
            color = "C{}".format(i)  # one colour per model in every panel
            xs = [p["value"] for p in pts]
            axes[0][col].plot(xs, [p["models"][kind]["time_s"] for p in pts], "o-", color=color,
                              label=kind)
            axes[0][col].plot(xs, [p["models"][kind]["outside_s"] for p in pts], "x:",
                              color=color, label=kind + " outside the network")
            axes[1][col].plot(xs, [p["models"][kind]["peak_mb"] for p in pts], "o-",
                              color=color, label=kind)
        unit = "s / iteration" if pts[0]["task"] == "train" else "s / image"
        axes[0][col].set_ylabel(unit)
        axes[1][col].set_ylabel("peak memory (MB)")
        for row in (0, 1):
            axes[row][col].set_xlabel(SWEEP_LABELS[sweep])
            axes[row][col].set_ylim(bottom=0)
            axes[row][col].grid(alpha=0.3)
        axes[0][col].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
