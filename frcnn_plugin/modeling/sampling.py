"""Samplers of training examples, as small swappable objects with their own registry.

A sampler picks which labelled anchors (RPN) or proposals (ROI heads) enter the loss. It is an
object with one method, ``__call__(labels) -> (pos_idx, neg_idx)``, held by the RPN and the ROI
heads in their ``sampler`` attribute (the swap point, as torchvision's ``fg_bg_sampler``).

Samplers are registered in :data:`FRCNN_SAMPLER_REGISTRY` and built by :func:`build_sampler`
from a config node (``MODEL.RPN.SAMPLER``, ``MODEL.ROI_HEADS.SAMPLER``) or from plain keyword
arguments, so they are reusable from plain Python::

    sampler = build_sampler(name="BalancedRandomSampler", batch_size_per_image=256,
                            positive_fraction=0.5, seed=0)
    pos_idx, neg_idx = sampler(labels)
"""
from typing import Mapping, Optional, Tuple

import torch
from torchvision.ops import nms

from detectron2.modeling.sampling import subsample_labels
from detectron2.utils.registry import Registry

from ..errors import ConfigError

__all__ = [
    "FRCNN_SAMPLER_REGISTRY",
    "BalancedRandomSampler",
    "OHEMSampler",
    "build_sampler",
    "rpn_sampler_names",
]

FRCNN_SAMPLER_REGISTRY = Registry("FRCNN_SAMPLER")
FRCNN_SAMPLER_REGISTRY.__doc__ = """
Registry for samplers of training examples (frcnn_plugin).

The registered object is called with keyword arguments (``batch_size_per_image``,
``positive_fraction``, ``bg_label``, ``seed``, ``config_prefix``) and must return an object with
``__call__(labels) -> (pos_idx, neg_idx)``.
"""


def _key(config_prefix: str, name: str) -> str:
    """The config key behind a constructor argument, for error messages."""
    return "{}.{}".format(config_prefix, name.upper()) if config_prefix else name


@FRCNN_SAMPLER_REGISTRY.register()
class BalancedRandomSampler:
    """The sampler of the Faster R-CNN paper: a random mini-batch of at most
    ``batch_size_per_image`` labelled examples per image, of which at most
    ``int(batch_size_per_image * positive_fraction)`` are positive; negatives fill in when
    positives are short (RPN: 256 anchors, at most 128 positive; Fast R-CNN: 128 RoIs, at most
    25 % = 32 foreground).

    It calls :func:`detectron2.modeling.sampling.subsample_labels`, so the counts are exactly
    detectron2's. Without a seed it draws from torch's global RNG, as detectron2 does; with a
    seed it draws from its own generator and leaves the global RNG untouched, so a run is
    reproducible independently of everything else that draws random numbers.
    """

    def __init__(
        self,
        *,
        batch_size_per_image: int,
        positive_fraction: float,
        bg_label: int = 0,
        seed: Optional[int] = None,
        config_prefix: str = "",
    ):
        """
        Args:
            batch_size_per_image (int): number of examples to sample per image, > 0.
            positive_fraction (float): the largest fraction of positives, in (0, 1].
            bg_label (int): the label of negatives ("background"): 0 for the RPN,
                ``num_classes`` for the ROI heads. -1 always means "ignore"; every other
                label is a positive (foreground) one.
            seed (int or None): seed of the sampler's own generator; None or a negative
                value: use torch's global RNG.
            config_prefix (str): the config node the values come from (e.g. "MODEL.RPN"),
                only used to name the offending key in error messages.
        """
        if not int(batch_size_per_image) > 0:
            raise ConfigError(
                "{}={!r} is invalid; allowed: an integer > 0 (the paper: 256 for the RPN, 128 for "
                "the ROI heads)".format(
                    _key(config_prefix, "batch_size_per_image"), batch_size_per_image
                )
            )
        if not 0.0 < float(positive_fraction) <= 1.0:
            raise ConfigError(
                "{}={!r} is invalid; allowed: a number in (0, 1] (the paper: 0.5 for the RPN, "
                "0.25 for the ROI heads)".format(
                    _key(config_prefix, "positive_fraction"), positive_fraction
                )
            )
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.bg_label = int(bg_label)
        self.seed = None if seed is None or seed < 0 else int(seed)
        self.generator = None
        if self.seed is not None:
            self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            labels (Tensor): (N,) integer labels: -1 ignore, ``bg_label`` negative
                (background), any other value positive (foreground; 1 for the RPN,
                a class in [0, num_classes) for the ROI heads).

        Returns:
            pos_idx, neg_idx (Tensor): 1-D int64 indices into ``labels`` of the sampled
            positives and negatives, on ``labels``' device; disjoint, together at most
            ``batch_size_per_image`` long.
        """
        if self.generator is None:
            return subsample_labels(
                labels, self.batch_size_per_image, self.positive_fraction, self.bg_label
            )
        # subsample_labels draws with torch.randperm from the global CPU RNG: run it on CPU
        # inside a forked RNG state reseeded from our own generator.
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            pos_idx, neg_idx = subsample_labels(
                labels.cpu(), self.batch_size_per_image, self.positive_fraction, self.bg_label
            )
        return pos_idx.to(labels.device), neg_idx.to(labels.device)

    def __repr__(self):
        return "{}(batch_size_per_image={}, positive_fraction={}, bg_label={}, seed={})".format(
            type(self).__name__,
            self.batch_size_per_image,
            self.positive_fraction,
            self.bg_label,
            self.seed,
        )


@FRCNN_SAMPLER_REGISTRY.register()
class OHEMSampler:
    """Online hard example mining (Shrivastava et al., 2016) for the ROI heads (only: the RPN
    has no loss-mining step and refuses a sampler with ``needs_losses``).

    In two steps: called with the labels (as every sampler), it returns **all** labelled
    proposals as candidates (foreground and background; -1 stays out). The ROI heads
    (:class:`~frcnn_plugin.modeling.roi_heads.FRCNNROIHeads`, which checks ``needs_losses``)
    then run the box head on every candidate without gradient, compute each one's loss
    (classification + box regression) and call :meth:`select`: the ``batch_size_per_image``
    candidates of highest loss, after an NMS among them by loss (the paper: IoU 0.7) so that
    near-duplicates do not fill the batch. ``positive_fraction`` is not used: the hardest
    examples are taken whatever their label, as in the paper.
    """

    needs_losses = True

    def __init__(self, *, batch_size_per_image: int, positive_fraction: float = 0.25,
                 bg_label: int = 0, seed: Optional[int] = None, config_prefix: str = "",
                 nms_thresh: float = 0.7):
        """
        Args:
            batch_size_per_image (int): the hardest examples kept per image, > 0.
            positive_fraction, seed: accepted for the registry's common signature; unused.
            bg_label (int): the background label.
            nms_thresh (float): IoU above which a candidate is suppressed by a harder one, in
                (0, 1]; 1 turns the NMS off.
        """
        if not int(batch_size_per_image) > 0:
            raise ConfigError("{}={!r} is invalid; allowed: an integer > 0".format(
                _key(config_prefix, "batch_size_per_image"), batch_size_per_image))
        if not 0.0 < float(nms_thresh) <= 1.0:
            raise ConfigError(
                "MODEL.ROI_HEADS.OHEM_NMS_THRESH={!r} is invalid; allowed: a number in (0, 1] "
                "(1: no NMS; the paper: 0.7)".format(nms_thresh))
        self.batch_size_per_image = int(batch_size_per_image)
        self.bg_label = int(bg_label)
        self.nms_thresh = float(nms_thresh)

    def __call__(self, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """All candidates: (foreground indices, background indices); ignored ones left out."""
        pos = torch.nonzero((labels != -1) & (labels != self.bg_label)).flatten()
        neg = torch.nonzero(labels == self.bg_label).flatten()
        return pos, neg

    def select(self, losses: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """The hardest candidates of one image.

        Args:
            losses (Tensor): (R,) each candidate's loss.
            boxes (Tensor): (R, 4) their boxes, XYXY.

        Returns:
            Tensor: int64 indices of at most ``batch_size_per_image`` candidates, by decreasing
            loss (ties: the lower index first), none overlapping a harder kept one by more than
            ``nms_thresh``.
        """
        order = torch.sort(losses, descending=True, stable=True).indices
        if self.nms_thresh < 1.0 and len(order):
            # ranks as scores: no ties, so the NMS keeps the stable order above
            ranks = torch.arange(len(order), 0, -1, dtype=torch.float32, device=losses.device)
            order = order[nms(boxes[order].float(), ranks, self.nms_thresh)]
        return order[: self.batch_size_per_image]

    def __repr__(self):
        return "OHEMSampler(batch_size_per_image={}, bg_label={}, nms_thresh={})".format(
            self.batch_size_per_image, self.bg_label, self.nms_thresh)


def build_sampler(spec: Optional[Mapping] = None, **kwargs):
    """Build a sampler registered in :data:`FRCNN_SAMPLER_REGISTRY`.

    Args:
        spec (CfgNode or dict or None): a config node such as ``cfg.MODEL.RPN.SAMPLER``
            (keys ``NAME``, ``SEED``) or a dict of constructor arguments; keys are
            case-insensitive, ``name`` picks the class (default "BalancedRandomSampler").
        kwargs: more constructor arguments (``batch_size_per_image``, ``positive_fraction``,
            ``bg_label``, ``seed``, ``config_prefix``); they override ``spec``.

    Returns:
        the sampler object: ``sampler(labels) -> (pos_idx, neg_idx)``.
    """
    args = {str(k).lower(): v for k, v in dict(spec or {}).items()}
    args.update(kwargs)
    name = args.pop("name", "BalancedRandomSampler")
    prefix = args.get("config_prefix", "")
    if name not in FRCNN_SAMPLER_REGISTRY:
        raise ConfigError(
            "{}={!r} is not a registered sampler; allowed: {}".format(
                _key(prefix + ".SAMPLER" if prefix else "", "name"),
                name,
                sorted(k for k, _ in FRCNN_SAMPLER_REGISTRY),
            )
        )
    return FRCNN_SAMPLER_REGISTRY.get(name)(**args)


def rpn_sampler_names():
    """Sorted names of the registered samplers the RPN can use: those without a true
    ``needs_losses`` (a sampler that mines by loss, as :class:`OHEMSampler`, works only in the
    ROI heads, which compute the per-example losses)."""
    return sorted(
        name for name, obj in FRCNN_SAMPLER_REGISTRY if not getattr(obj, "needs_losses", False)
    )
