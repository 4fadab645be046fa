"""``BestAnchorMatcher``: detectron2's :class:`Matcher` whose low-quality matches (each GT's
best anchors, the paper's positive rule (i)) need an IoU above a floor.

The Faster R-CNN paper (Sec. 3.1.2) labels positive "the anchor/anchors with the highest IoU
overlap with a ground-truth box" and says nothing about a highest IoU of zero. Implementations
differ exactly there:

* py-faster-rcnn (``anchor_target_layer.py``) marks every anchor whose IoU equals the GT's
  maximum, so a GT that overlaps no inside anchor (maximum 0) makes **every** inside anchor a
  positive;
* detectron2's ``Matcher(allow_low_quality_matches=True)`` has the same tie rule; its stock RPN
  matches all anchors, cross-boundary ones included, so a zero maximum is rare there (and a GT
  whose best anchors cross the border gets no positive at all once those are ignored);
* the well-known PyTorch reimplementations replace a zero maximum by a tiny epsilon before
  the comparison, and MMDetection's ``MaxIoUAssigner`` has ``min_pos_iou``.

The plugin matches only inside anchors (``MODEL.RPN.BOUNDARY_THRESH >= 0``, the paper), where a
zero maximum is common: a small GT in a corner overlaps none of them. Here a GT's best anchors
(ties included) are promoted only when their IoU is **greater than** ``min_iou``
(``MODEL.RPN.BEST_ANCHOR_MIN_IOU``, default 0.0); a negative value restores the literal tie rule
of py-faster-rcnn and detectron2.
"""
from detectron2.modeling.matcher import Matcher

from ..cli import ConfigError

__all__ = ["BestAnchorMatcher"]


class BestAnchorMatcher(Matcher):
    """:class:`Matcher` whose low-quality matches skip the GTs whose best IoU is ``<= min_iou``.

    Args:
        thresholds, labels, allow_low_quality_matches: as detectron2's :class:`Matcher`.
        min_iou (float): a GT's best predictions are promoted to label 1 only if their IoU with
            it is greater than this; < 0 promotes them whatever their IoU (Matcher's rule).
    """

    def __init__(self, thresholds, labels, allow_low_quality_matches=True, *, min_iou=0.0):
        super().__init__(thresholds, labels, allow_low_quality_matches)
        if not -1.0 <= float(min_iou) < 1.0:
            raise ConfigError(
                "MODEL.RPN.BEST_ANCHOR_MIN_IOU={!r} is invalid; allowed: a number in [-1, 1) "
                "(0.0: promote a GT's best anchor only when it overlaps the GT; < 0: always, "
                "as py-faster-rcnn)".format(min_iou)
            )
        self.min_iou = float(min_iou)

    @classmethod
    def from_matcher(cls, matcher: Matcher, min_iou: float) -> "BestAnchorMatcher":
        """The same thresholds, labels and low-quality switch as ``matcher``, with ``min_iou``."""
        return cls(
            matcher.thresholds[1:-1], matcher.labels, matcher.allow_low_quality_matches,
            min_iou=min_iou,
        )

    def set_low_quality_matches_(self, match_labels, match_quality_matrix):
        """detectron2's rule on the rows (GTs) whose highest quality is above ``min_iou``."""
        above = match_quality_matrix.max(dim=1).values > self.min_iou
        if not bool(above.any()):
            return
        if not bool(above.all()):
            match_quality_matrix = match_quality_matrix[above]
        super().set_low_quality_matches_(match_labels, match_quality_matrix)

    def __repr__(self):
        return "{}(thresholds={}, labels={}, allow_low_quality_matches={}, min_iou={})".format(
            type(self).__name__, self.thresholds[1:-1], self.labels,
            self.allow_low_quality_matches, self.min_iou,
        )
