"""Searching anchors that fit better: :func:`suggest_anchors` keeps the number of sizes and
aspect ratios of the config (so the RPN head keeps its shape) and tries 1-D k-means on
log sqrt(area) and log(h / w) of the GT boxes, the current sizes times 2^(k/3), then a
coordinate search; each candidate is scored by :class:`.scoring.AnchorFitter` on the real anchor
grid, and the config's own anchors are a candidate, so the suggestion is never worse."""
from typing import Dict, Optional

import numpy as np

from .scoring import AnchorFitter, AnchorSpec, FitStats

__all__ = ["kmeans_1d", "suggest_anchors"]


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
