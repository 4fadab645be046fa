"""How well a config's anchors fit a data set's boxes, and anchors that fit better.

For every GT box of a registered data set (annotations and image sizes only; no image is read),
resized as the test-time pipeline resizes its image (``ResizeShortestEdge(INPUT.MIN_SIZE_TEST,
INPUT.MAX_SIZE_TEST)``), the anchors of the config's anchor generator
(``build_anchor_generator`` on the backbone's output shapes) are laid on the feature maps of
that image size. Their sizes are the backbone's own: its forward on the meta device (shapes
only, no computation) for the image padded to its ``size_divisibility``, as the model pads it.
E.g. VGG's four max-pools round down: an 801-pixel side gives 50 cells, not ceil(801 / 16) = 51.
Only the anchors that take part in training count: those inside the image when
``MODEL.RPN.BOUNDARY_THRESH >= 0``, all of them otherwise (and for RetinaNet).

Measured per GT box: its best anchor IoU, and the number of anchors it makes positive (IoU >=
the high threshold, ``MODEL.RPN.IOU_THRESHOLDS[-1]``, or equal to its best IoU, as
detectron2's Matcher with low-quality matches). :func:`suggest_anchors` searches anchor sizes
and aspect ratios (as many as the config has, so the RPN head keeps its shape): 1-D k-means on
log sqrt(area) and log(h / w) of the GT boxes, the current sizes times 2^(k/3), then a
coordinate search; each candidate is scored on the real anchor grid, and the config's own
anchors are a candidate, so the suggestion is never worse.
"""
import copy
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.data.transforms import ResizeShortestEdge
from detectron2.modeling import build_backbone
from detectron2.modeling.anchor_generator import _broadcast_params, build_anchor_generator
from detectron2.structures import Boxes, BoxMode, pairwise_iou

from ..cli import DataError
from ..config_checks import config_errors
from ..data.checks import load_dataset_dicts

__all__ = [
    "AnchorSpec",
    "FitStats",
    "AnchorFitter",
    "dataset_gt_boxes",
    "kmeans_1d",
    "suggest_anchors",
    "analyze_dataset",
    "format_report",
    "plot_fit",
]

MID_IOU = 0.5


@dataclass(frozen=True)
class AnchorSpec:
    """Anchor sizes (sqrt of area, input pixels) and aspect ratios (h / w), per feature map."""

    sizes: Tuple[Tuple[float, ...], ...]
    ratios: Tuple[Tuple[float, ...], ...]

    @staticmethod
    def make(sizes, ratios) -> "AnchorSpec":
        return AnchorSpec(tuple(tuple(float(v) for v in s) for s in sizes),
                          tuple(tuple(float(v) for v in r) for r in ratios))

    def as_dict(self):
        return {"sizes": [list(s) for s in self.sizes], "ratios": [list(r) for r in self.ratios]}


@dataclass
class FitStats:
    """Fit of one anchor set to the GT boxes.

    Attributes:
        best_iou (ndarray): (G,) best IoU of each GT box with the anchors taking part.
        positives (ndarray): (G,) anchors each GT box makes positive (IoU >= high threshold,
            or equal to its best IoU > 0).
        thresholds (tuple): (low, high) IoU thresholds of the anchor matcher.
    """

    best_iou: np.ndarray
    positives: np.ndarray
    thresholds: Tuple[float, float]

    @property
    def num_gt(self) -> int:
        return int(len(self.best_iou))

    def share(self, predicate) -> float:
        return float(np.mean(predicate(self.best_iou))) if self.num_gt else float("nan")

    @property
    def share_high(self) -> float:
        """Share of GT boxes whose best anchor has IoU >= the high threshold (0.7)."""
        return self.share(lambda x: x >= self.thresholds[1])

    @property
    def share_mid(self) -> float:
        """Share with best IoU >= 0.5."""
        return self.share(lambda x: x >= MID_IOU)

    @property
    def share_low(self) -> float:
        """Share with best IoU < the low threshold (0.3): boxes matched only as a GT's best."""
        return self.share(lambda x: x < self.thresholds[0])

    def key(self):
        """Sort key of a candidate: share >= high threshold, then mean best IoU."""
        return (round(self.share_high, 9), float(np.mean(self.best_iou)) if self.num_gt else 0.0)

    def as_dict(self) -> Dict[str, float]:
        lo, hi = self.thresholds
        pos = self.positives
        return {
            "num_gt": self.num_gt,
            "share_best_iou_ge_{:g}".format(hi): self.share_high,
            "share_best_iou_ge_{:g}".format(MID_IOU): self.share_mid,
            "share_best_iou_lt_{:g}".format(lo): self.share_low,
            "mean_best_iou": float(np.mean(self.best_iou)) if self.num_gt else float("nan"),
            "positives_per_gt_mean": float(np.mean(pos)) if self.num_gt else float("nan"),
            "positives_per_gt_median": float(np.median(pos)) if self.num_gt else float("nan"),
            "positives_per_gt_min": int(np.min(pos)) if self.num_gt else 0,
            "gt_without_positive": int(np.sum(pos == 0)),
        }


def dataset_gt_boxes(
    dataset_dicts: Sequence[dict], min_size: int, max_size: int, max_images: int = 0
) -> List[Tuple[Tuple[int, int], np.ndarray]]:
    """GT boxes of each image, resized as ``ResizeShortestEdge(min_size, max_size)`` resizes it.

    Args:
        dataset_dicts (list[dict]): detectron2 records with ``height``, ``width`` and
            ``annotations`` (``bbox``, ``bbox_mode``); crowd boxes are skipped.
        min_size, max_size (int): INPUT.MIN_SIZE_TEST / INPUT.MAX_SIZE_TEST.
        max_images (int): use only the first ``max_images`` records (0: all).

    Returns:
        list of ((height, width) after resizing, (G, 4) float XYXY boxes in resized pixels),
        for the images with at least one box of positive size.
    """
    out = []
    records = dataset_dicts[:max_images] if max_images else dataset_dicts
    for r in records:
        if "height" not in r or "width" not in r:
            raise DataError(
                "Record {!r} has no height/width; the anchor analysis reads image sizes from the "
                "records, not from the files".format(r.get("file_name", r.get("image_id")))
            )
        h, w = int(r["height"]), int(r["width"])
        nh, nw = ResizeShortestEdge.get_output_shape(h, w, int(min_size), int(max_size))
        boxes = [
            BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
            for a in r.get("annotations", [])
            if a.get("iscrowd", 0) == 0
        ]
        if not boxes:
            continue
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * [nw / w, nh / h, nw / w, nh / h]
        b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
        if len(b):
            out.append(((nh, nw), b))
    return out


class AnchorFitter:
    """Scores anchor sets (:class:`AnchorSpec`) against GT boxes with a config's anchor
    generator class, strides, offset and matcher thresholds."""

    def __init__(self, cfg):
        """
        Args:
            cfg (CfgNode): a config (not modified); RetinaNet configs use
                MODEL.RETINANET.IN_FEATURES / IOU_THRESHOLDS, all others MODEL.RPN's.
        """
        self.cfg = cfg.clone()
        self.cfg.defrost()
        retinanet = cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
        node = cfg.MODEL.RETINANET if retinanet else cfg.MODEL.RPN
        with config_errors(cfg):
            with torch.device("meta"):  # for output shapes only: no memory, no initialization
                self.backbone = build_backbone(self.cfg).eval()
            shapes = self.backbone.output_shape()
            self.in_features = list(node.IN_FEATURES)
            self.input_shapes = [shapes[f] for f in self.in_features]
            self.current = self.spec_of(build_anchor_generator(self.cfg, self.input_shapes))
        self.size_divisibility = int(getattr(self.backbone, "size_divisibility", 0) or 0)
        self.input_channels = len(cfg.MODEL.PIXEL_MEAN)
        self.thresholds = (float(node.IOU_THRESHOLDS[0]), float(node.IOU_THRESHOLDS[-1]))
        self.boundary_thresh = -1 if retinanet else int(cfg.MODEL.RPN.BOUNDARY_THRESH)
        self.generator_name = cfg.MODEL.ANCHOR_GENERATOR.NAME
        self._grid_sizes: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}

    @property
    def strides(self) -> List[int]:
        return [int(s.stride) for s in self.input_shapes]

    def spec_of(self, generator) -> AnchorSpec:
        """Sizes and ratios of a built generator (FRCNNAnchorGenerator keeps them; detectron2's
        DefaultAnchorGenerator: from the config keys, as it read them)."""
        n = len(self.input_shapes)
        ag = self.cfg.MODEL.ANCHOR_GENERATOR
        sizes = getattr(generator, "sizes", None) or _broadcast_params(ag.SIZES, n, "sizes")
        ratios = getattr(generator, "aspect_ratios", None) or _broadcast_params(
            ag.ASPECT_RATIOS, n, "aspect_ratios")
        return AnchorSpec.make(sizes, ratios)

    def config_keys(self, spec: AnchorSpec) -> Dict[str, object]:
        """MODEL.ANCHOR_GENERATOR keys that give ``spec``: SIZES and ASPECT_RATIOS (one list
        when all levels are equal), and, for FRCNNAnchorGenerator, SCALES / OCTAVE_BASE_SCALE /
        BASE_SIZES reset when set (SIZES is used only with SCALES empty and the octave off)."""

        def compact(levels, cast):
            levels = [[cast(v) for v in lvl] for lvl in levels]
            return levels[:1] if all(lvl == levels[0] for lvl in levels) else levels

        keys = {"SIZES": compact(spec.sizes, _nice),
                "ASPECT_RATIOS": compact(spec.ratios, lambda v: float("{:.3g}".format(v)))}
        ag = self.cfg.MODEL.ANCHOR_GENERATOR
        if ag.get("SCALES", []) or ag.get("OCTAVE_BASE_SCALE", 0.0):
            keys.update({"SCALES": [], "OCTAVE_BASE_SCALE": 0.0})
        if ag.get("BASE_SIZES", []):
            keys["BASE_SIZES"] = []
        return keys

    def build_generator(self, spec: AnchorSpec):
        cfg = self.cfg.clone()
        for k, v in self.config_keys(spec).items():
            cfg.MODEL.ANCHOR_GENERATOR[k] = copy.deepcopy(v)
        return build_anchor_generator(cfg, self.input_shapes)

    def grid_sizes(self, image_size: Tuple[int, int]) -> List[Tuple[int, int]]:
        """(Hi, Wi) of each anchor feature map for an input of ``image_size`` (h, w): the
        backbone's output for that input padded to its ``size_divisibility`` (a forward on the
        meta device: shapes only), e.g. (50, 50) for VGG16 and 801 x 801."""
        key = (int(image_size[0]), int(image_size[1]))
        if key not in self._grid_sizes:
            d = self.size_divisibility
            padded = [int(math.ceil(s / d) * d) if d > 0 else s for s in key]
            with torch.no_grad():
                features = self.backbone(
                    torch.empty((1, self.input_channels, *padded), device="meta"))
            self._grid_sizes[key] = [tuple(int(v) for v in features[f].shape[-2:])
                                     for f in self.in_features]
        return self._grid_sizes[key]

    def anchors(self, generator, image_size) -> Boxes:
        """The anchors that take part in training for an image of ``image_size``."""
        feats = [torch.empty((1, 0) + g) for g in self.grid_sizes(image_size)]
        anchors = Boxes.cat(generator(feats))
        if self.boundary_thresh >= 0:
            anchors = anchors[anchors.inside_box(image_size, self.boundary_thresh)]
        return anchors

    def evaluate(self, spec: AnchorSpec, gts) -> FitStats:
        """Fit of ``spec`` to ``gts`` (from :func:`dataset_gt_boxes`)."""
        generator = self.build_generator(spec)
        by_size: Dict[tuple, list] = {}
        for size, boxes in gts:
            by_size.setdefault(tuple(size), []).append(boxes)
        best, positives = [], []
        for size, group in by_size.items():
            anchors = self.anchors(generator, size)
            gt = Boxes(torch.as_tensor(np.concatenate(group), dtype=torch.float32))
            if len(anchors) == 0:
                best.append(np.zeros(len(gt)))
                positives.append(np.zeros(len(gt), dtype=np.int64))
                continue
            iou = pairwise_iou(gt, anchors)
            b = iou.max(dim=1).values
            pos = (iou >= self.thresholds[1]) | ((iou == b[:, None]) & (b[:, None] > 0))
            best.append(b.numpy().astype(np.float64))
            positives.append(pos.sum(dim=1).numpy())
        if not best:
            return FitStats(np.zeros(0), np.zeros(0, dtype=np.int64), self.thresholds)
        return FitStats(np.concatenate(best), np.concatenate(positives), self.thresholds)


def _nice(v: float):
    """Integers as int, other values rounded to 3 significant digits."""
    v = float(v)
    return int(round(v)) if abs(v - round(v)) < 1e-6 else float("{:.3g}".format(v))


def kmeans_1d(values: np.ndarray, k: int, iters: int = 50) -> np.ndarray:
    """Sorted k cluster centres of 1-D ``values`` (Lloyd's algorithm from the quantiles;
    deterministic)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    if len(values) == 0:
        raise ValueError("kmeans_1d: no values")
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        assign = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        new = np.array([values[assign == i].mean() if np.any(assign == i) else centres[i]
                        for i in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def _cluster_centres(log_values: np.ndarray, k: int, step: float) -> np.ndarray:
    """k cluster centres of log values (k-means), as values. When the data have fewer than k
    distinct clusters (e.g. only square boxes), a geometric ladder ``step`` apart around the
    median instead, so that the k anchors stay distinct."""
    centres = kmeans_1d(log_values, k)
    if k > 1 and np.min(np.diff(centres)) < 0.05:
        centres = np.median(log_values) + np.log(step) * (np.arange(k) - (k - 1) / 2)
    return np.exp(centres)


def _round_sizes(levels) -> tuple:
    return tuple(tuple(sorted(set(max(1, int(round(v))) for v in lvl))) for lvl in levels)


def _round_ratios(levels) -> tuple:
    return tuple(tuple(sorted(set(max(0.05, round(float(v), 2)) for v in lvl))) for lvl in levels)


def _valid(spec: AnchorSpec, current: AnchorSpec) -> bool:
    """Same number of sizes and ratios per level as the config (the RPN head keeps its shape)."""
    return all(len(a) == len(b) for a, b in zip(spec.sizes, current.sizes)) and all(
        len(a) == len(b) for a, b in zip(spec.ratios, current.ratios))


def suggest_anchors(fitter: AnchorFitter, gts, current: Optional[AnchorSpec] = None,
                    refine_passes: int = 2):
    """Search anchor sizes and ratios that raise the share of GT boxes with best IoU >= the
    high threshold (ties: the mean best IoU).

    Returns:
        (AnchorSpec, FitStats, int): the best candidate (the current anchors if nothing is
        better), its fit, and the number of candidates scored.
    """
    current = current or fitter.current
    boxes = np.concatenate([b for _, b in gts])
    wh = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6)
    log_size, log_ratio = np.log(np.sqrt(wh[:, 0] * wh[:, 1])), np.log(wh[:, 1] / wh[:, 0])
    n_levels = len(current.sizes)
    scored: Dict[AnchorSpec, FitStats] = {}

    def score(spec):
        if spec not in scored and _valid(spec, current):
            scored[spec] = fitter.evaluate(spec, gts)
        return scored.get(spec)

    size_cands = [current.sizes]
    if n_levels == 1:
        k = len(current.sizes[0])
        size_cands.append(_round_sizes([_cluster_centres(log_size, k, 2 ** 0.5)]))
        size_cands.append(_round_sizes([np.exp(np.quantile(log_size, (np.arange(k) + 0.5) / k))]))
    for e in (-3, -2, -1, 1, 2, 3):
        size_cands.append(_round_sizes([[v * 2 ** (e / 3) for v in lvl] for lvl in current.sizes]))
    ratio_cands = [current.ratios]
    if all(len(r) == len(current.ratios[0]) for r in current.ratios):
        km = _cluster_centres(log_ratio, len(current.ratios[0]), 2.0)
        ratio_cands.append(_round_ratios([km] * n_levels))
    for s in size_cands:
        for r in ratio_cands:
            score(AnchorSpec.make(s, r))

    best = max(scored, key=lambda sp: scored[sp].key())
    for _ in range(refine_passes):  # coordinate search around the best
        improved = False
        for kind in ("sizes", "ratios"):
            levels = getattr(best, kind)
            factors = (0.8, 0.9, 1.1, 1.25) if kind == "sizes" else (0.8, 1.25)
            for li, lvl in enumerate(levels):
                for vi in range(len(lvl)):
                    for f in factors:
                        new = [list(x) for x in levels]
                        new[li][vi] *= f
                        new = _round_sizes(new) if kind == "sizes" else _round_ratios(new)
                        spec = AnchorSpec.make(new, best.ratios) if kind == "sizes" else \
                            AnchorSpec.make(best.sizes, new)
                        stats = score(spec)
                        if stats is not None and stats.key() > scored[best].key():
                            best, improved = spec, True
                            levels = getattr(best, kind)
        if not improved:
            break
    return best, scored[best], len(scored)


@dataclass
class AnchorFitResult:
    """Output of :func:`analyze_dataset`."""

    dataset: str
    num_images: int
    image_sizes: List[Tuple[int, int]]
    gt_boxes: np.ndarray
    fitter: AnchorFitter
    current: AnchorSpec
    current_stats: FitStats
    suggested: AnchorSpec
    suggested_stats: FitStats
    num_candidates: int
    min_size: int = 0
    max_size: int = 0

    def as_dict(self):
        wh = self.gt_boxes[:, 2:] - self.gt_boxes[:, :2]
        return {
            "dataset": self.dataset,
            "num_images": self.num_images,
            "resize": {"min_size_test": self.min_size, "max_size_test": self.max_size},
            "anchor_generator": self.fitter.generator_name,
            "in_features": self.fitter.in_features,
            "strides": self.fitter.strides,
            "boundary_thresh": self.fitter.boundary_thresh,
            "iou_thresholds": list(self.fitter.thresholds),
            "gt_sqrt_area": _quantiles(np.sqrt(wh[:, 0] * wh[:, 1])),
            "gt_aspect_ratio": _quantiles(wh[:, 1] / wh[:, 0]),
            "current": dict(self.current.as_dict(), **self.current_stats.as_dict()),
            "suggested": dict(self.suggested.as_dict(), **self.suggested_stats.as_dict()),
            "suggested_config": {"MODEL": {"ANCHOR_GENERATOR":
                                           self.fitter.config_keys(self.suggested)}},
            "num_candidates": self.num_candidates,
        }


def _quantiles(x):
    return {k: float(np.quantile(x, q)) for k, q in
            (("min", 0), ("p10", 0.1), ("median", 0.5), ("p90", 0.9), ("max", 1))}


def analyze_dataset(cfg, dataset_name: str, max_images: int = 0) -> AnchorFitResult:
    """Fit of the config's anchors to a registered data set, and a suggestion."""
    dicts = load_dataset_dicts(dataset_name)
    min_size, max_size = int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)
    gts = dataset_gt_boxes(dicts, min_size, max_size, max_images)
    if not gts:
        raise DataError("Data set {!r} has no GT boxes to analyze".format(dataset_name))
    fitter = AnchorFitter(cfg)
    current_stats = fitter.evaluate(fitter.current, gts)
    suggested, stats, n = suggest_anchors(fitter, gts)
    return AnchorFitResult(
        dataset_name, len(dicts[:max_images] if max_images else dicts), [s for s, _ in gts],
        np.concatenate([b for _, b in gts]), fitter, fitter.current, current_stats, suggested,
        stats, n, min_size, max_size,
    )


def _pct(x: float) -> str:
    return "{:.1f} %".format(100 * x)


def _yaml_list(v) -> str:
    return "[" + ", ".join(_yaml_list(x) if isinstance(x, list) else repr(x) for x in v) + "]"


def format_yaml(keys: Dict[str, object]) -> str:
    """The MODEL.ANCHOR_GENERATOR keys as a YAML block ready to paste into a config."""
    lines = ["MODEL:", "  ANCHOR_GENERATOR:"]
    for k, v in keys.items():
        lines.append("    {}: {}".format(k, _yaml_list(v) if isinstance(v, list) else v))
    return "\n".join(lines)


def format_report(result: AnchorFitResult) -> str:
    """A text report: the setting, a table current vs suggested, GT statistics, the YAML."""
    f = result.fitter
    lo, hi = f.thresholds
    d = result.as_dict()
    lines = [
        "Anchor fit of {}: {} images, {} GT boxes, resized by ResizeShortestEdge({}, {}).".format(
            result.dataset, result.num_images, len(result.gt_boxes), result.min_size,
            result.max_size),
        "Anchors: {} on {} (strides {}); {}.".format(
            f.generator_name, ", ".join(f.in_features), ", ".join(map(str, f.strides)),
            "anchors inside the image (BOUNDARY_THRESH {})".format(f.boundary_thresh)
            if f.boundary_thresh >= 0 else "all anchors"),
        "GT sqrt(area) px: min {min:.0f}, median {median:.0f}, max {max:.0f}; ".format(
            **d["gt_sqrt_area"]) + "aspect ratio h/w: min {min:.2f}, median {median:.2f}, "
        "max {max:.2f}.".format(**d["gt_aspect_ratio"]),
        "",
        "| anchors | sizes | ratios | best IoU ≥ {:g} | ≥ {:g} | < {:g} | positives per GT "
        "(mean / min) |".format(hi, MID_IOU, lo),
        "|---|---|---|---|---|---|---|",
    ]
    for name, spec, st in (("current", result.current, result.current_stats),
                           ("suggested", result.suggested, result.suggested_stats)):
        s = st.as_dict()
        lines.append("| {} | {} | {} | {} | {} | {} | {:.1f} / {} |".format(
            name, _yaml_list(f.config_keys(spec)["SIZES"]),
            _yaml_list(f.config_keys(spec)["ASPECT_RATIOS"]), _pct(st.share_high),
            _pct(st.share_mid), _pct(st.share_low), s["positives_per_gt_mean"],
            s["positives_per_gt_min"]))
    lines += ["", "Suggested anchors ({} candidates scored; share of GT boxes with best IoU ≥ "
              "{:g}: {} -> {}):".format(result.num_candidates, hi,
                                        _pct(result.current_stats.share_high),
                                        _pct(result.suggested_stats.share_high)),
              format_yaml(f.config_keys(result.suggested))]
    return "\n".join(lines)


def plot_fit(result: AnchorFitResult, path: str) -> str:
    """PNG: GT sizes and ratios against the current and suggested anchors (left); best-IoU
    histograms with the thresholds (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    wh = result.gt_boxes[:, 2:] - result.gt_boxes[:, :2]
    fig = Figure(figsize=(9, 3.6), dpi=80)
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    ax0, ax1 = fig.subplots(1, 2)
    ax0.scatter(np.sqrt(wh[:, 0] * wh[:, 1]), wh[:, 1] / wh[:, 0], s=6, c="0.5", alpha=0.5,
                label="GT boxes")
    for spec, marker, color, name in ((result.current, "x", "red", "current anchors"),
                                      (result.suggested, "+", "blue", "suggested anchors")):
        pts = [(s, r) for lvl_s, lvl_r in zip(spec.sizes, spec.ratios) for s in lvl_s
               for r in lvl_r]
        ax0.scatter(*zip(*pts), marker=marker, s=70, c=color, label=name)
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    for axis in (ax0.xaxis, ax0.yaxis):  # ticks 1, 2, 5 x 10^k, written plainly
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: "{:g}".format(v)))
        axis.set_minor_formatter(NullFormatter())
    ax0.set_xlabel("sqrt(area), input px")
    ax0.set_ylabel("aspect ratio h / w")
    ax0.legend(fontsize=7, loc="best")
    bins = np.linspace(0, 1, 21)
    lo, hi = result.fitter.thresholds
    for st, color, name in ((result.current_stats, "red", "current"),
                            (result.suggested_stats, "blue", "suggested")):
        ax1.hist(st.best_iou, bins=bins, histtype="step", color=color, linewidth=1.5,
                 label="{}: {} ≥ {:g}".format(name, _pct(st.share_high), hi))
    for t in sorted({lo, MID_IOU, hi}):
        ax1.axvline(t, color="0.3", linestyle="--", linewidth=0.8)
    ax1.set_xlabel("best anchor IoU per GT box")
    ax1.set_ylabel("GT boxes")
    ax1.legend(fontsize=7, loc="upper left")
    fig.suptitle("Anchor fit: {}".format(result.dataset), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path
