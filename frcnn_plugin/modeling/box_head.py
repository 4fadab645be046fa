"""Fast R-CNN box head with VGG's fully connected layers fc6 and fc7."""
import numpy as np
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_BOX_HEAD_REGISTRY

from ..errors import ConfigError
from .fc_svd import SVDLinear

__all__ = ["VGGFCHead"]


@ROI_BOX_HEAD_REGISTRY.register()
class VGGFCHead(nn.Module):
    """VGG's classifier without its last layer: flatten -> fc6 -> ReLU -> dropout -> fc7 ->
    ReLU -> dropout.

    With 7x7 RoI pooling on VGG16's conv5_3 (512 channels), fc6 maps 25 088 -> 4 096 and fc7
    4 096 -> 4 096, exactly the shapes of torchvision's ``classifier.0`` and ``classifier.3``,
    so ImageNet weights load into it (``tools/convert_vgg_weights.py``).

    Registered as ``MODEL.ROI_BOX_HEAD.NAME: "VGGFCHead"``; it reads ``MODEL.ROI_BOX_HEAD.FC_DIM``
    (the paper: 4096), ``MODEL.ROI_BOX_HEAD.DROPOUT`` (0.5) and ``MODEL.ROI_BOX_HEAD.FC_SVD_RANKS``
    ([0, 0]: plain layers; e.g. [1024, 256]: fc6 and fc7 as truncated SVDs,
    :class:`~frcnn_plugin.modeling.fc_svd.SVDLinear`, factorized when a checkpoint is loaded)
    and ignores ``NUM_FC``/``NUM_CONV``.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, fc_dim: int = 4096, dropout: float = 0.5,
                 fc_svd_ranks=(0, 0)):
        """
        Args:
            input_shape (ShapeSpec): shape of the pooled RoI features (channels, height, width).
            fc_dim (int): output size of fc6 and fc7.
            dropout (float): dropout probability after fc6 and fc7, in [0, 1); 0 disables it.
            fc_svd_ranks (tuple[int, int]): rank of the truncated SVD of fc6 and of fc7; 0 keeps
                the layer whole.
        """
        super().__init__()
        if fc_dim <= 0:
            raise ConfigError("MODEL.ROI_BOX_HEAD.FC_DIM={!r} must be > 0".format(fc_dim))
        if not 0.0 <= dropout < 1.0:
            raise ConfigError("MODEL.ROI_BOX_HEAD.DROPOUT={!r} must be in [0, 1)".format(dropout))
        in_dim = int(np.prod([d for d in (input_shape.channels, input_shape.height,
                                          input_shape.width) if d]))
        self.fc6 = nn.Linear(in_dim, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self._output_size = fc_dim
        for fc in (self.fc6, self.fc7):
            # torchvision's VGG initialization of linear layers
            nn.init.normal_(fc.weight, 0, 0.01)
            nn.init.constant_(fc.bias, 0)
        ranks = list(fc_svd_ranks)
        if len(ranks) != 2:
            raise ConfigError("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS={!r} must have 2 ranks (fc6, "
                              "fc7)".format(fc_svd_ranks))
        for name, rank in zip(("fc6", "fc7"), ranks):
            fc = getattr(self, name)
            limit = min(fc.in_features, fc.out_features)
            if not 0 <= rank <= limit:
                raise ConfigError(
                    "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS={!r}: rank {} for {} ({} -> {}); allowed: 0 "
                    "(off) or 1 ... {}".format(list(fc_svd_ranks), rank, name, fc.in_features,
                                               fc.out_features, limit))
            if rank:  # the factors' values come from the checkpoint (SVD at load time)
                setattr(self, name, SVDLinear(fc.in_features, fc.out_features, rank, name=name))

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "input_shape": input_shape,
            "fc_dim": cfg.MODEL.ROI_BOX_HEAD.FC_DIM,
            "dropout": cfg.MODEL.ROI_BOX_HEAD.DROPOUT,
            "fc_svd_ranks": tuple(cfg.MODEL.ROI_BOX_HEAD.get("FC_SVD_RANKS", (0, 0))),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C, H, W) pooled features -> (R, fc_dim)."""
        x = torch.flatten(x, start_dim=1)
        x = self.dropout(self.relu(self.fc6(x)))
        return self.dropout(self.relu(self.fc7(x)))

    @property
    @torch.jit.unused
    def output_shape(self):
        return ShapeSpec(channels=self._output_size)
