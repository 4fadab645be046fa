"""Anchors as base size x scales x ratios (Faster R-CNN, MMDetection, RetinaNet octaves).

:class:`FRCNNAnchorGenerator` is a drop-in replacement for detectron2's
``DefaultAnchorGenerator`` (``MODEL.ANCHOR_GENERATOR.NAME: "FRCNNAnchorGenerator"``) for
detectron2's RPN, RetinaNet, and the plugin's own models. Per feature map (level) ``l``, with
stride ``stride_l``, the anchor sizes (square root of the area, in input-image pixels) are

* ``BASE_SIZES[l] * s`` for ``s`` in ``SCALES[l]`` (the paper: base 16, scales 8, 16, 32), or
* ``BASE_SIZES[l] * OCTAVE_BASE_SCALE * 2 ** (i / SCALES_PER_OCTAVE)`` for
  ``i = 0 ... SCALES_PER_OCTAVE - 1`` (RetinaNet: 4 x 2^0, 2^(1/3), 2^(2/3)), or
* ``SIZES[l]`` (detectron2's key) when ``SCALES`` is empty and ``OCTAVE_BASE_SCALE`` is 0,

where an empty ``BASE_SIZES`` means ``BASE_SIZES[l] = stride_l``. Each size is combined with
every aspect ratio ``r`` (h / w) of ``ASPECT_RATIOS[l]``: ``h = size * sqrt(r)``,
``w = size / sqrt(r)``, centred at ``((j + OFFSET) * stride_l, (i + OFFSET) * stride_l)``.

Cell anchors, their order (sizes outer loop, ratios inner loop) and the grid are detectron2's
own (the class subclasses ``DefaultAnchorGenerator``), so the same sizes give identical tensors.
A per-level list of length 1 is broadcast to all levels, as in detectron2.
"""
import collections
from typing import List, Optional, Sequence

import torch

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ANCHOR_GENERATOR_REGISTRY
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

from ..errors import ConfigError

__all__ = ["FRCNNAnchorGenerator", "per_level_lists", "uses_explicit_sizes"]

# Constructor argument -> config key, for error messages.
_KEYS = {
    "sizes": "MODEL.ANCHOR_GENERATOR.SIZES",
    "aspect_ratios": "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
    "base_sizes": "MODEL.ANCHOR_GENERATOR.BASE_SIZES",
    "scales": "MODEL.ANCHOR_GENERATOR.SCALES",
    "octave_base_scale": "MODEL.ANCHOR_GENERATOR.OCTAVE_BASE_SCALE",
    "scales_per_octave": "MODEL.ANCHOR_GENERATOR.SCALES_PER_OCTAVE",
    "offset": "MODEL.ANCHOR_GENERATOR.OFFSET",
    "cache_size": "MODEL.ANCHOR_GENERATOR.CACHE_SIZE",
    "strides": "the strides of the input features (input_shape)",
}


def _is_seq(x) -> bool:
    return isinstance(x, collections.abc.Sequence) and not isinstance(x, str)


def _check_positive(values, name: str, what: str, given=None):
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(
                f"{_KEYS[name]}={values if given is None else given!r} contains {v!r}: every "
                f"{what} must be a positive number."
            )


def _uses_scales(scales) -> bool:
    return scales is not None and not (_is_seq(scales) and len(scales) == 0)


def uses_explicit_sizes(scales, octave_base_scale) -> bool:
    """Whether the anchor sizes come from ``SIZES`` (detectron2's key): only when ``SCALES`` is
    empty (or None) and ``OCTAVE_BASE_SCALE`` is not > 0; otherwise ``SIZES`` is not read."""
    octave_on = (not isinstance(octave_base_scale, bool)
                 and isinstance(octave_base_scale, (int, float)) and octave_base_scale > 0)
    return not (_uses_scales(scales) or octave_on)


def per_level_lists(values, num_levels: int, name: str, what: str) -> List[List[float]]:
    """Validate list[float] or list[list[float]] and broadcast it to ``num_levels`` levels.

    Raises:
        ValueError: naming the config key, when ``values`` is empty, has an empty level, a
            non-positive value, or a number of levels other than 1 or ``num_levels``.
    """
    key = _KEYS[name]
    if not _is_seq(values) or len(values) == 0:
        raise ConfigError(
            f"{key}={values!r}: expected a non-empty list of positive {what}s, or one such list "
            f"per feature map (list of lists)."
        )
    levels = list(values) if _is_seq(values[0]) else [values]
    if len(levels) not in (1, num_levels):
        raise ConfigError(
            f"{key}={values!r} gives {len(levels)} levels, but the anchor generator has "
            f"{num_levels} feature maps; give 1 level (used for all) or {num_levels}."
        )
    for i, level in enumerate(levels):
        if not _is_seq(level) or len(level) == 0:
            raise ConfigError(
                f"{key}={values!r}: level {i} is {level!r}; each level must be a non-empty "
                f"list of positive {what}s."
            )
        _check_positive(level, name, what, given=values)
    if len(levels) == 1:  # one level for all, as DefaultAnchorGenerator broadcasts it
        levels = levels * num_levels
    return [[float(v) for v in level] for level in levels]


def _per_level_values(values, num_levels: int, name: str, what: str) -> List[float]:
    """Validate list[float] with one value (used for all levels) or one per level."""
    key = _KEYS[name]
    if not _is_seq(values) or any(_is_seq(v) for v in values):
        raise ConfigError(f"{key}={values!r}: expected a flat list of positive {what}s.")
    if len(values) not in (1, num_levels):
        raise ConfigError(
            f"{key}={values!r} gives {len(values)} levels, but the anchor generator has "
            f"{num_levels} feature maps; give 1 value (used for all), {num_levels}, or [] "
            f"(the strides)."
        )
    _check_positive(values, name, what)
    return [float(v) for v in values] * (num_levels if len(values) == 1 else 1)


@ANCHOR_GENERATOR_REGISTRY.register()
class FRCNNAnchorGenerator(DefaultAnchorGenerator):
    """Anchors of base size x scales (or octave scales) x aspect ratios on every feature map.

    Same interface and output as ``DefaultAnchorGenerator``: ``num_anchors`` (list[int], one per
    level), ``box_dim`` (4), and ``forward(features) -> list[Boxes]`` with, for each level, the
    ``Hi * Wi * num_anchors[i]`` anchors in XYXY input-image pixels, ordered by location (row
    major), then by size, then by aspect ratio. The effective per-level sizes are in
    :attr:`sizes`.

    Grid anchors are cached per (level, Hi, Wi, device): a feature size seen before costs a
    dictionary look-up. The returned ``Boxes`` share storage with the cache, so callers must
    not modify them in place (detectron2's RPN and RetinaNet do not).
    """

    @configurable
    def __init__(
        self,
        *,
        strides: Sequence[int],
        aspect_ratios,
        sizes=None,
        base_sizes: Optional[Sequence[float]] = None,
        scales=None,
        octave_base_scale: float = 0.0,
        scales_per_octave: int = 3,
        offset: float = 0.5,
        cache_size: int = 32,
    ):
        """
        Args:
            strides (list[int]): stride of each input feature map.
            aspect_ratios (list[float] or list[list[float]]): aspect ratios (h / w), for all
                levels or per level.
            sizes (list[float] or list[list[float]]): detectron2's explicit anchor sizes
                (sqrt of area, input pixels); used only when ``scales`` is empty and
                ``octave_base_scale`` is 0.
            base_sizes (list[float]): base size per level (or one for all); None or empty:
                the level's stride. Needs ``scales`` or ``octave_base_scale``.
            scales (list[float] or list[list[float]]): multipliers of the base size, for all
                levels or per level; None or empty: not used.
            octave_base_scale (float): > 0 gives the scales
                ``octave_base_scale * 2 ** (i / scales_per_octave)``,
                ``i = 0 ... scales_per_octave - 1``; 0: off. Exclusive with ``scales``.
            scales_per_octave (int): number of octave scales (used when octave_base_scale > 0).
            offset (float): centre of the first anchor, in strides from the image corner;
                in [0, 1). 0.5 centres anchors in their cell (the paper).
            cache_size (int): number of grid sizes whose anchors are kept (per level); 0
                disables the cache.

        Raises:
            ValueError: naming the config key, for empty or non-positive ratios, sizes, scales
                or base sizes, per-level lists whose length is neither 1 nor the number of
                feature maps, ``scales`` together with ``octave_base_scale``, base sizes
                without scales, or ``offset`` outside [0, 1).
        """
        strides = list(strides) if _is_seq(strides) else strides
        if not _is_seq(strides) or len(strides) == 0:
            raise ConfigError(f"{_KEYS['strides']}: got {strides!r}, need at least one stride.")
        _check_positive(strides, "strides", "stride")
        if not (isinstance(offset, (int, float)) and 0.0 <= offset < 1.0):
            raise ConfigError(
                f"{_KEYS['offset']}={offset!r} is not allowed: it must be in [0, 1) "
                f"(0.5 centres anchors in their cell, 0.0 puts them on the cell corner)."
            )
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ConfigError(f"{_KEYS['cache_size']}={cache_size!r}: must be an integer >= 0.")
        num_levels = len(strides)
        aspect_ratios = per_level_lists(aspect_ratios, num_levels, "aspect_ratios", "ratio")
        level_sizes = self._level_sizes(
            strides, sizes, base_sizes, scales, octave_base_scale, scales_per_octave
        )
        super().__init__(
            sizes=level_sizes, aspect_ratios=aspect_ratios, strides=strides, offset=offset
        )
        self.sizes = level_sizes
        self.aspect_ratios = aspect_ratios
        self.cache_size = cache_size
        self._cache = collections.OrderedDict()

    @staticmethod
    def _level_sizes(
        strides, sizes, base_sizes, scales, octave_base_scale, scales_per_octave
    ) -> List[List[float]]:
        """The anchor sizes of each level, from explicit sizes, scales or octave scales."""
        num_levels = len(strides)
        if isinstance(octave_base_scale, bool) or not isinstance(octave_base_scale, (int, float)):
            raise ConfigError(f"{_KEYS['octave_base_scale']}={octave_base_scale!r}: not a number.")
        if octave_base_scale < 0:
            raise ConfigError(
                f"{_KEYS['octave_base_scale']}={octave_base_scale!r}: must be > 0, or 0 (off)."
            )
        use_octave = octave_base_scale > 0
        use_scales = _uses_scales(scales)
        if use_scales and use_octave:
            raise ConfigError(
                f"{_KEYS['scales']}={scales!r} and {_KEYS['octave_base_scale']}="
                f"{octave_base_scale!r} are both set; give one of them (set SCALES to [] or "
                f"OCTAVE_BASE_SCALE to 0.0)."
            )
        has_base = base_sizes is not None and not (_is_seq(base_sizes) and len(base_sizes) == 0)
        if uses_explicit_sizes(scales, octave_base_scale):
            if has_base:
                raise ConfigError(
                    f"{_KEYS['base_sizes']}={base_sizes!r} needs {_KEYS['scales']} or "
                    f"{_KEYS['octave_base_scale']}; with neither, the sizes come from "
                    f"{_KEYS['sizes']} (set BASE_SIZES to [])."
                )
            if sizes is None:
                raise ConfigError(
                    f"No anchor sizes: set {_KEYS['sizes']}, {_KEYS['scales']} or "
                    f"{_KEYS['octave_base_scale']}."
                )
            return per_level_lists(sizes, num_levels, "sizes", "size")
        bases = (
            _per_level_values(base_sizes, num_levels, "base_sizes", "base size")
            if has_base
            else [float(s) for s in strides]
        )
        if use_octave:
            n = scales_per_octave
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(
                    f"{_KEYS['scales_per_octave']}={n!r}: must be an integer >= 1 when "
                    f"{_KEYS['octave_base_scale']} > 0."
                )
            # (base * octave_base_scale) * 2^(i/n), the order of detectron2's RetinaNet config.
            return [[b * octave_base_scale * 2 ** (i / n) for i in range(n)] for b in bases]
        level_scales = per_level_lists(scales, num_levels, "scales", "scale")
        return [[b * s for s in ss] for b, ss in zip(bases, level_scales)]

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        ag = cfg.MODEL.ANCHOR_GENERATOR
        ret.update(
            {
                "base_sizes": ag.get("BASE_SIZES", []),
                "scales": ag.get("SCALES", []),
                "octave_base_scale": ag.get("OCTAVE_BASE_SCALE", 0.0),
                "scales_per_octave": ag.get("SCALES_PER_OCTAVE", 3),
                "cache_size": ag.get("CACHE_SIZE", 32),
            }
        )
        return ret

    def _grid_anchors(self, grid_sizes: List[List[int]]) -> List[torch.Tensor]:
        """detectron2's grid anchors, computed once per (level, Hi, Wi, device) and reused.

        Returns:
            list[Tensor]: per level, a (Hi * Wi * num_anchors[i], 4) tensor.
        """
        if self.cache_size == 0 or torch.jit.is_scripting() or torch.jit.is_tracing():
            return super()._grid_anchors(grid_sizes)
        inference = torch.is_inference_mode_enabled()  # inference tensors stay in their mode
        keys = [
            (level, int(size[0]), int(size[1]), cell.device, inference)
            for level, (size, cell) in enumerate(zip(grid_sizes, self.cell_anchors))
        ]
        if any(k not in self._cache for k in keys):
            for k, anchors in zip(keys, super()._grid_anchors(grid_sizes)):
                self._cache[k] = anchors
        for k in keys:
            self._cache.move_to_end(k)
        while len(self._cache) > self.cache_size * self.num_features:
            self._cache.popitem(last=False)
        return [self._cache[k] for k in keys]

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda() / .half() change the cell anchors: drop anchors computed from the old.
        self._cache.clear()
        return super()._apply(fn, *args, **kwargs)
