from .anchor_generator import FRCNNAnchorGenerator  # noqa: F401
from .backbone import VGG, build_vgg_backbone  # noqa: F401
from .box_head import VGGFCHead  # noqa: F401
from .meta_arch import FRCNNGeneralizedRCNN  # noqa: F401
from .roi_heads import FRCNNROIHeads  # noqa: F401
from .rpn import FRCNNRPN, SoftmaxRPNHead  # noqa: F401
from .tta import FRCNNGeneralizedRCNNWithTTA  # noqa: F401
from .sampling import FRCNN_SAMPLER_REGISTRY, BalancedRandomSampler, build_sampler  # noqa: F401
