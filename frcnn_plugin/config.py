"""frcnn_plugin's config keys: :func:`add_frcnn_config`.

Each key is added with a default and a comment. The defaults reproduce the paper where a key is
the plugin's own; detectron2's own keys keep detectron2's defaults here, and the YAML files under
``configs/`` set the paper's values (see the README's configuration reference).
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_frcnn_config"]


def add_frcnn_config(cfg):
    """Add frcnn_plugin's keys to ``cfg`` (in place). Safe to call more than once."""
    _C = cfg

    # ---------------------------------------------------------------------------------------
    # VGG backbone (MODEL.BACKBONE.NAME: "build_vgg_backbone").
    # MODEL.BACKBONE.FREEZE_AT counts frozen conv blocks: 2 freezes conv1 and conv2 (the paper).
    # ---------------------------------------------------------------------------------------
    _C.MODEL.VGG = CN()
    # VGG depth: 11, 13, 16 (the paper) or 19.
    _C.MODEL.VGG.DEPTH = 16
    # Norm after each conv: "" (original VGG), "BN" (torchvision's vgg16_bn), "FrozenBN",
    # "SyncBN", "GN".
    _C.MODEL.VGG.NORM = ""
    # Output features, a subset of conv1 ... conv5 (strides 1, 2, 4, 8, 16). conv5 is conv5_3
    # after ReLU, without the 5th max-pool: 512 channels at stride 16.
    _C.MODEL.VGG.OUT_FEATURES = ["conv5"]

    # ---------------------------------------------------------------------------------------
    # VGG fc6/fc7 box head (MODEL.ROI_BOX_HEAD.NAME: "VGGFCHead"); it reads
    # MODEL.ROI_BOX_HEAD.FC_DIM (the paper: 4096).
    # ---------------------------------------------------------------------------------------
    # Dropout probability after fc6 and after fc7 (VGG and the paper: 0.5; 0 disables it).
    _C.MODEL.ROI_BOX_HEAD.DROPOUT = 0.5

    return cfg
