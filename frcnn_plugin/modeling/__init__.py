from .anchor_generator import FRCNNAnchorGenerator  # noqa: F401
from .backbone import VGG, build_vgg_backbone  # noqa: F401
from .box_head import VGGFCHead  # noqa: F401
