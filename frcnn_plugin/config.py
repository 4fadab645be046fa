from detectron2.config import CfgNode as CN


def add_frcnn_config(cfg):
    """Add frcnn_plugin's config keys (each with a default) to a detectron2 config."""
    _C = cfg
    _C.MODEL.VGG = CN()
