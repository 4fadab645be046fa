"""``FRCNNGeneralizedRCNN``: detectron2's GeneralizedRCNN that tells the RPN each image's
original size.

The paper drops proposals smaller than 16 px **in the original image**; the RPN only sees the
resized input (``images.image_sizes``). detectron2's ``GeneralizedRCNN`` knows the original size
(``height``/``width`` of each input dict) but does not pass it on. This subclass overrides only
:meth:`preprocess_image`, used both in training and in inference, to attach the original sizes
to the :class:`ImageList` it returns, as ``images.original_sizes`` (list of (h, w)); everything
else is GeneralizedRCNN's. Inputs without ``height``/``width`` count as not resized.

Select it with ``MODEL.META_ARCHITECTURE: "FRCNNGeneralizedRCNN"``. It is needed only by
``FRCNNRPN`` with ``MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS: True`` and
``MIN_SIZE > 0``; it behaves exactly as GeneralizedRCNN with every other component.
"""
from typing import Dict, List, Tuple

import torch

from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList

__all__ = ["FRCNNGeneralizedRCNN", "original_sizes"]


def original_sizes(
    batched_inputs: List[Dict[str, torch.Tensor]], image_sizes: List[Tuple[int, int]]
) -> List[Tuple[int, int]]:
    """The (height, width) of each input before resizing; the input size where not given."""
    return [
        (int(x.get("height", size[0])), int(x.get("width", size[1])))
        for x, size in zip(batched_inputs, image_sizes)
    ]


@META_ARCH_REGISTRY.register()
class FRCNNGeneralizedRCNN(GeneralizedRCNN):
    """GeneralizedRCNN whose preprocessed :class:`ImageList` carries ``original_sizes``."""

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        images = super().preprocess_image(batched_inputs)
        images.original_sizes = original_sizes(batched_inputs, images.image_sizes)
        return images
