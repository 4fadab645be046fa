"""``FRCNNDatasetMapper``: detectron2's ``DatasetMapper`` that records, for each training image,
how many input pixels one original-image pixel spans.

The paper's minimum proposal size is in original-image pixels
(``MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS``). Without cropping, the input size over
the ``height``/``width`` of the record gives that scale. With ``INPUT.CROP`` the input shows only
a crop of the original image, resized: the ratio of the sizes is then wrong, and only the
transforms know the scale. This mapper stores it under :data:`INPUT_SCALE_KEY` as
``(scale_y, scale_x)``; :class:`~frcnn_plugin.modeling.meta_arch.FRCNNGeneralizedRCNN` reads it.
"""
from typing import Tuple

import numpy as np

from detectron2.data import DatasetMapper

__all__ = ["FRCNNDatasetMapper", "INPUT_SCALE_KEY", "input_scale"]

INPUT_SCALE_KEY = "frcnn_input_scale"


def input_scale(transforms) -> Tuple[float, float]:
    """(scale_y, scale_x): input pixels per original-image pixel of a detectron2/fvcore
    ``TransformList`` of resizes, crops, flips and pads (an affine map of coordinates)."""
    points = transforms.apply_coords(np.array([[0.0, 0.0], [1.0, 1.0]]))
    scale_x, scale_y = np.abs(points[1] - points[0])
    return float(scale_y), float(scale_x)


class FRCNNDatasetMapper(DatasetMapper):
    """``DatasetMapper`` that adds ``dataset_dict[INPUT_SCALE_KEY]`` to each training sample.

    Extends the narrowest method that receives the sample's transforms,
    ``DatasetMapper._transform_annotations`` (detectron2 v0.6 and main), which runs for every
    training sample with annotations; test samples (no crop) are unchanged.
    """

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        dataset_dict[INPUT_SCALE_KEY] = input_scale(transforms)
        super()._transform_annotations(dataset_dict, transforms, image_shape)
