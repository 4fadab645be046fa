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
of py-faster-rcnn and detectron2 (every GT's best anchors, also at IoU 0).

Ties are decided with a relative tolerance, :attr:`BestAnchorMatcher.TIE_RTOL`, not with
detectron2's exact ``==``. The anchors of one size have the same area ``s**2`` for every aspect
ratio in exact arithmetic, so a small GT inside many anchors has the same IoU with all of them;
in float32 (ratio anchors have irrational sides) those IoUs differ in the last bits, and an exact
``==`` keeps only the anchors whose rounding happens to win (a 20 x 20 GT at [400, 300, 420, 320]:
15 positives instead of its 149 tied anchors).
"""
from detectron2.modeling.matcher import Matcher

from ..errors import ConfigError

__all__ = ["BestAnchorMatcher"]


class BestAnchorMatcher(Matcher):
    """:class:`Matcher` whose low-quality matches skip the GTs whose best IoU is ``<= min_iou``,
    with ties within the relative tolerance :attr:`TIE_RTOL`.

    Args:
        thresholds, labels, allow_low_quality_matches: as detectron2's :class:`Matcher`.
        min_iou (float): a GT's best predictions are promoted to label 1 only if their IoU with
            it is greater than this; < 0 promotes them whatever their IoU (Matcher's rule).
    """

    # A GT's best predictions are those whose quality is >= its highest quality * (1 - TIE_RTOL).
    # Why 1e-5: float32 has a relative precision of 6e-8; an IoU of boxes with coordinates up to
    # ~1000 px (rounding error ~3e-5 px each) and sides of ~90 px or more carries a relative error
    # of a few 1e-7. Measured on the paper's anchors at 800 x 800 and 600 x 1000, IoUs that are
    # equal in exact arithmetic differ by at most 4e-7 relative in float32; 1e-5 leaves a margin
    # of 25x. A genuine difference of 1e-5 relative is ~1e-3 px on a 100-px box, far below what
    # a box annotation can mean, so promoting such a runner-up changes nothing that matters.
    TIE_RTOL = 1e-5

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
        """Set to 1 the label of each GT's best predictions (the paper's positive rule (i)).

        For every row (GT) whose highest quality is above ``min_iou`` (with ``min_iou < 0``:
        every row, as detectron2's and py-faster-rcnn's rule), every prediction whose quality
        is ``>= highest * (1 - TIE_RTOL)`` is a best one (ties included). Modifies
        ``match_labels`` (M,) in place; ``match_quality_matrix`` is (G, M).
        """
        if match_quality_matrix.numel() == 0:
            return
        highest = match_quality_matrix.max(dim=1).values
        rows = highest > self.min_iou
        floor = highest * (1.0 - self.TIE_RTOL)
        best = (match_quality_matrix >= floor[:, None]) & rows[:, None]
        match_labels[best.any(dim=0)] = 1

    def __repr__(self):
        return "{}(thresholds={}, labels={}, allow_low_quality_matches={}, min_iou={})".format(
            type(self).__name__, self.thresholds[1:-1], self.labels,
            self.allow_low_quality_matches, self.min_iou,
        )
