"""``FRCNNGeneralizedRCNN``: detectron2's GeneralizedRCNN that tells the RPN each image's
original size.

The paper drops proposals smaller than 16 px **in the original image**; the RPN only sees the
resized input (``images.image_sizes``). detectron2's ``GeneralizedRCNN`` knows the original size
(``height``/``width`` of each input dict) but does not pass it on. This subclass overrides only
:meth:`preprocess_image`, used both in training and in inference, to attach the original sizes
to the :class:`ImageList` it returns, as ``images.original_sizes`` (list of (h, w)); everything
else is GeneralizedRCNN's. Inputs without ``height``/``width`` count as not resized.

Under ``INPUT.CROP`` the input shows a crop of the original image: the original size is then
the size of that crop in original pixels, which only the mapper knows;
:class:`~frcnn_plugin.data.dataset_mapper.FRCNNDatasetMapper` (used by the plugin's trainer)
records the scale under ``frcnn_input_scale``, and training with a crop and another mapper is an
error when the RPN needs the sizes.

Select it with ``MODEL.META_ARCHITECTURE: "FRCNNGeneralizedRCNN"``. It is needed only by
``FRCNNRPN`` with ``MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS: True`` and
``MIN_SIZE > 0``; it behaves exactly as GeneralizedRCNN with every other component.
"""
from typing import Dict, List, Tuple

import torch

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList

from ..data.dataset_mapper import INPUT_SCALE_KEY
from ..errors import ConfigError
from .memory_format import apply_channels_last

__all__ = ["FRCNNGeneralizedRCNN", "original_sizes"]


def original_sizes(
    batched_inputs: List[Dict[str, torch.Tensor]], image_sizes: List[Tuple[int, int]]
) -> List[Tuple[int, int]]:
    """The (height, width) of the original-image region each input shows: the input size over
    the recorded scale (``frcnn_input_scale``, from FRCNNDatasetMapper) where there is one, else
    the record's ``height``/``width``, else the input size (not resized)."""
    sizes = []
    for x, size in zip(batched_inputs, image_sizes):
        if INPUT_SCALE_KEY in x:
            scale_y, scale_x = x[INPUT_SCALE_KEY]
            sizes.append((size[0] / scale_y, size[1] / scale_x))
        else:
            sizes.append((_size(x.get("height", size[0])), _size(x.get("width", size[1]))))
    return sizes


def _size(value):
    """``int(value)``; when traced, a tensor stays a tensor (an input of the exported model),
    where ``int`` would freeze the example's value into the trace."""
    if torch.jit.is_tracing() and isinstance(value, torch.Tensor):
        return value
    return int(value)


@META_ARCH_REGISTRY.register()
class FRCNNGeneralizedRCNN(GeneralizedRCNN):
    """GeneralizedRCNN whose preprocessed :class:`ImageList` carries ``original_sizes``."""

    @configurable
    def __init__(self, *, input_crop: bool = False, channels_last: bool = False, **kwargs):
        """
        Args:
            input_crop (bool): training inputs are cropped (``INPUT.CROP.ENABLED``): each
                training input must then carry ``frcnn_input_scale`` when the RPN measures its
                minimum size in original pixels.
            channels_last (bool): run the backbone and the RPN head in the ``channels_last``
                memory format (``MODEL.CHANNELS_LAST``,
                :func:`~frcnn_plugin.modeling.memory_format.apply_channels_last`).
            kwargs: the arguments of :class:`GeneralizedRCNN`.
        """
        super().__init__(**kwargs)
        self.input_crop = bool(input_crop)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            apply_channels_last(self)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["input_crop"] = cfg.INPUT.CROP.ENABLED
        ret["channels_last"] = cfg.MODEL.get("CHANNELS_LAST", False)
        return ret

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        images = super().preprocess_image(batched_inputs)
        if self.training and self.input_crop and self._needs_original_sizes():
            missing = [x.get("file_name", "?") for x in batched_inputs if INPUT_SCALE_KEY not in x]
            if missing:
                raise ConfigError(
                    "INPUT.CROP.ENABLED=True with MODEL.PROPOSAL_GENERATOR."
                    "MIN_SIZE_IN_ORIGINAL_PIXELS=True: the training inputs ({}) lack {!r}, the "
                    "crop's scale. Allowed: build the training loader with "
                    "frcnn_plugin.data.FRCNNDatasetMapper (the plugin's Trainer does), "
                    "INPUT.CROP.ENABLED False, or MIN_SIZE_IN_ORIGINAL_PIXELS False".format(
                        ", ".join(map(str, missing[:3])), INPUT_SCALE_KEY
                    )
                )
        images.original_sizes = original_sizes(batched_inputs, images.image_sizes)
        return images

    def _needs_original_sizes(self) -> bool:
        pg = self.proposal_generator
        return bool(getattr(pg, "min_size_in_original_pixels", False)) and pg.min_box_size > 0
