"""Compare an exported detector with the eager one on the same inputs, output by output."""
from typing import List, NamedTuple, Optional

import torch

__all__ = ["BOX_ATOL", "SCORE_ATOL", "Comparison", "pair_detections", "compare_instances",
           "comparison_table", "text_table"]

# Default tolerances of the check (absolute): boxes in original-image pixels, scores in [0, 1].
# Measured differences are far below (README, "Export"); float32 reordering in ONNX Runtime's
# kernels is the only source.
BOX_ATOL = 1e-2
SCORE_ATOL = 1e-4


class Comparison(NamedTuple):
    """One image: detection counts, the largest absolute differences over the paired
    detections (None without detections) and the number of pairs (same class)."""

    name: str
    eager: int
    exported: int
    box_diff: Optional[float]
    score_diff: Optional[float]
    classes_equal: int

    def ok(self, box_atol: float = BOX_ATOL, score_atol: float = SCORE_ATOL) -> bool:
        return (self.eager == self.exported and self.classes_equal == self.eager
                and (self.eager == 0 or (self.box_diff <= box_atol
                                         and self.score_diff <= score_atol)))


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def pair_detections(eager, exported) -> torch.Tensor:
    """(K, 2) indices of eager and exported detections paired one to one: the same class,
    nearest first (largest coordinate difference of the boxes, then the score difference).
    Detections of equal score can come in another order after an export (sorting keeps no
    order among ties), so they are paired by content, not by position."""
    a_boxes, b_boxes = eager.pred_boxes.tensor.double(), exported.pred_boxes.tensor.double()
    cost = (a_boxes[:, None, :] - b_boxes[None, :, :]).abs().amax(dim=2)
    cost = cost + (eager.scores.double()[:, None] - exported.scores.double()[None, :]).abs()
    same = eager.pred_classes.cpu()[:, None] == exported.pred_classes.cpu()[None, :]
    cost = torch.where(same, cost, torch.full_like(cost, float("inf")))
    pairs = []
    while cost.numel() and bool(torch.isfinite(cost).any()):
        i, j = divmod(int(torch.argmin(cost)), cost.shape[1])
        pairs.append((i, j))
        cost[i, :] = float("inf")
        cost[:, j] = float("inf")
    return torch.as_tensor(pairs, dtype=torch.int64).reshape(-1, 2)


def compare_instances(name: str, eager, exported) -> Comparison:
    """Compare two ``Instances`` (``pred_boxes``, ``scores``, ``pred_classes``): the counts,
    the detections of the same class paired (:func:`pair_detections`), the largest box and
    score differences over the pairs, the number of pairs (detections whose class agrees)."""
    eager, exported = eager.to("cpu"), exported.to("cpu")
    n, m = len(eager), len(exported)
    pairs = pair_detections(eager, exported)
    i, j = pairs[:, 0], pairs[:, 1]
    return Comparison(
        name, n, m,
        _max_abs(eager.pred_boxes.tensor[i], exported.pred_boxes.tensor[j]) if n else None,
        _max_abs(eager.scores[i], exported.scores[j]) if n else None,
        len(pairs),
    )


def _number(value) -> str:
    return "-" if value is None else "{:.2g}".format(value)


def comparison_table(rows: List[Comparison], backend: str, box_atol: float = BOX_ATOL,
                     score_atol: float = SCORE_ATOL) -> str:
    """A text table: per image, the detections (eager / exported) and per output the largest
    absolute difference (boxes, scores) or the agreeing count (classes)."""
    header = ("image", "detections eager/{}".format(backend),
              "boxes max|diff| (px, tol {:g})".format(box_atol),
              "scores max|diff| (tol {:g})".format(score_atol), "classes equal", "ok")
    body = [(r.name, "{}/{}".format(r.eager, r.exported), _number(r.box_diff),
             _number(r.score_diff), "{}/{}".format(r.classes_equal, r.eager),
             "yes" if r.ok(box_atol, score_atol) else "NO") for r in rows]
    return text_table(header, body)


def text_table(header, body) -> str:
    """Columns padded to their widest cell, two spaces apart, a dashed line under the
    header."""
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
