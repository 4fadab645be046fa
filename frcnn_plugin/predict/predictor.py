"""Batched inference with a built detectron2 model, as detectron2's ``DefaultPredictor`` does
it for one image: the test-time ``ResizeShortestEdge``, then the model's own forward in eval
mode without gradients."""
from typing import List, Sequence

import numpy as np
import torch

from detectron2.data import transforms as T

__all__ = ["BatchPredictor"]


class BatchPredictor:
    """Run a model on batches of images given in the config's ``INPUT.FORMAT``.

    Args:
        cfg: the config the model was built from (``INPUT.MIN_SIZE_TEST``,
            ``INPUT.MAX_SIZE_TEST``).
        model (torch.nn.Module): a detectron2 model (e.g. ``GeneralizedRCNN``); put in eval
            mode.

    Example::

        predictor = BatchPredictor(cfg, model)
        instances = predictor([read_image(path, format=cfg.INPUT.FORMAT)])[0]
    """

    def __init__(self, cfg, model):
        self.model = model.eval()
        self.resize = T.ResizeShortestEdge(
            [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
        )

    def inputs(self, image: np.ndarray) -> dict:
        """The model's input dict of one HWC ``uint8`` image: resized, CHW float, with its
        original ``height`` and ``width`` (the outputs are in original-image pixels)."""
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        if resized.ndim == 2:
            resized = resized[:, :, None]
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
        return {"image": tensor, "height": height, "width": width}

    def __call__(self, images: Sequence[np.ndarray]):
        """Predict a batch of images; returns one CPU ``Instances`` per image."""
        if not images:
            return []
        with torch.no_grad():
            outputs = self.model([self.inputs(image) for image in images])
        return [output["instances"].to("cpu") for output in outputs]

    @staticmethod
    def keep(instances, score_thresh: float) -> List:
        """The instances with a score >= ``score_thresh``."""
        return instances[instances.scores >= score_thresh]
