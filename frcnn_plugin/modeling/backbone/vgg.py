"""VGG backbones (Simonyan & Zisserman, 2014) for detectron2, as used by Faster R-CNN.

The backbone is VGG's convolutional part, conv1_1 ... conv5_3, each conv followed by ReLU
(and a norm layer in the batch-norm variants), with the max-pool after conv1 ... conv4 and
**without the 5th max-pool**: the last feature map has stride 16 and 512 channels
(800x800 -> 50x50x512), as in the Faster R-CNN paper.

Output feature names are ``"conv1"`` ... ``"conv5"`` (the output of the last conv + ReLU of
each block, before that block's max-pool); strides 1, 2, 4, 8, 16. The default output is
``["conv5"]``.

Parameter names follow the layer names of the paper (``conv1_1`` ... ``conv5_3``), so that
``tools/convert_vgg_weights.py`` can map torchvision's ImageNet weights onto them.
"""

from typing import Dict, List, Sequence

import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from ...errors import ConfigError

__all__ = ["VGG", "VGG_BLOCKS", "VGG_INITS", "build_vgg_backbone"]

# Initializations of the convolutions (MODEL.VGG.INIT).
VGG_INITS = ("pytorch", "torchvision")

# Number of 3x3 conv layers in each of the 5 blocks, per depth (VGG paper, configs A, B, D, E).
VGG_BLOCKS = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
_CHANNELS = (64, 128, 256, 512, 512)
_BLOCK_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")


class VGG(Backbone):
    """VGG conv1_1 ... conv5_3 without the 5th max-pool.

    Args:
        depth (int): 11, 13, 16 or 19.
        norm (str): "" for the original VGG, or any norm accepted by
            :func:`detectron2.layers.get_norm` ("BN", "FrozenBN", "SyncBN", "GN") for the
            batch-norm variants (torchvision's ``vgg16_bn`` uses "BN").
        out_features (list[str]): a subset of "conv1" ... "conv5".
        freeze_at (int): freeze the first ``freeze_at`` blocks (0: none; 2: conv1 and conv2,
            as in the paper). Frozen blocks get ``requires_grad=False`` and, with "BN", frozen
            statistics (converted to FrozenBatchNorm2d).
        init (str): one of :data:`VGG_INITS`: "pytorch" (``nn.Conv2d``'s default) or
            "torchvision" (torchvision's ``VGG._initialize_weights``: Kaiming-normal fan-out
            for the convolutions, zero biases, norms at weight 1 and bias 0).
    """

    def __init__(
        self,
        depth: int = 16,
        norm: str = "",
        out_features: Sequence[str] = ("conv5",),
        freeze_at: int = 0,
        init: str = "pytorch",
    ):
        super().__init__()
        if init not in VGG_INITS:
            raise ConfigError(
                "MODEL.VGG.INIT={!r} is invalid; allowed: {}".format(
                    init, ", ".join(repr(v) for v in VGG_INITS)
                )
            )
        if depth not in VGG_BLOCKS:
            raise ConfigError(
                "MODEL.VGG.DEPTH={!r} is not supported; allowed: {}".format(
                    depth, sorted(VGG_BLOCKS)
                )
            )
        out_features = list(out_features)
        if not out_features or any(f not in _BLOCK_NAMES for f in out_features):
            raise ConfigError(
                "MODEL.VGG.OUT_FEATURES={!r} is invalid; allowed: a non-empty subset of {}".format(
                    out_features, list(_BLOCK_NAMES)
                )
            )
        if not 0 <= freeze_at <= 5:
            raise ConfigError(
                "MODEL.BACKBONE.FREEZE_AT={!r} is invalid for VGG; allowed: 0 ... 5 (number of "
                "conv blocks to freeze; the paper freezes 2)".format(freeze_at)
            )
        if norm:
            try:
                get_norm(norm, 8)
            except KeyError:
                raise ConfigError(
                    'MODEL.VGG.NORM={!r} is not a norm detectron2\'s get_norm knows; allowed: "" '
                    '(none), "BN", "FrozenBN", "SyncBN", "GN" ...'.format(norm)
                ) from None
        self.depth = depth
        self._out_features = out_features
        self._out_feature_channels: Dict[str, int] = {}
        self._out_feature_strides: Dict[str, int] = {}
        self.blocks: List[List[str]] = []

        in_channels, stride = 3, 1
        last = max(_BLOCK_NAMES.index(f) for f in out_features)
        for b, (n_convs, channels) in enumerate(zip(VGG_BLOCKS[depth], _CHANNELS)):
            if b > last:
                break  # blocks after the last requested output are not built
            names = []
            for i in range(n_convs):
                name = "conv{}_{}".format(b + 1, i + 1)
                conv = Conv2d(
                    in_channels,
                    channels,
                    kernel_size=3,
                    padding=1,
                    bias=True,  # also with BN, as torchvision's vgg*_bn (weights load as is)
                    norm=get_norm(norm, channels),
                    activation=F.relu,
                )
                self.add_module(name, conv)
                names.append(name)
                in_channels = channels
            self.blocks.append(names)
            self._out_feature_channels[_BLOCK_NAMES[b]] = channels
            self._out_feature_strides[_BLOCK_NAMES[b]] = stride
            stride *= 2  # the max-pool after this block (none after conv5)
        if init == "torchvision":
            self._torchvision_init()
        self.freeze(freeze_at)

    def _torchvision_init(self):
        """torchvision's VGG initialization of the convolutions and their norms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def freeze(self, freeze_at: int = 0):
        """Freeze the first ``freeze_at`` conv blocks (parameters and BN statistics)."""
        for names in self.blocks[:freeze_at]:
            for name in names:
                conv = getattr(self, name)
                for p in conv.parameters():
                    p.requires_grad = False
                if conv.norm is not None:
                    conv.norm = FrozenBatchNorm2d.convert_frozen_batchnorm(conv.norm)
        return self

    def forward(self, x):
        """
        Args:
            x (Tensor): (N, 3, H, W) normalized images.

        Returns:
            dict[str -> Tensor]: the requested features; "conv5" is (N, 512, H/16, W/16).
        """
        if x.dim() != 4:
            raise ConfigError(
                "VGG takes an (N, C, H, W) tensor, got shape {}".format(tuple(x.shape))
            )
        outputs = {}
        for b, names in enumerate(self.blocks):
            if b > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for name in names:
                x = getattr(self, name)(x)
            if _BLOCK_NAMES[b] in self._out_features:
                outputs[_BLOCK_NAMES[b]] = x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_vgg_backbone(cfg, input_shape: ShapeSpec):
    """Build a :class:`VGG` backbone from ``MODEL.VGG.*`` and ``MODEL.BACKBONE.FREEZE_AT``."""
    if input_shape.channels != 3:
        raise ConfigError(
            "VGG expects 3 input channels (len(MODEL.PIXEL_MEAN)), got {}".format(
                input_shape.channels
            )
        )
    return VGG(
        depth=cfg.MODEL.VGG.DEPTH,
        norm=cfg.MODEL.VGG.NORM,
        out_features=cfg.MODEL.VGG.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        init=cfg.MODEL.VGG.INIT,
    )
