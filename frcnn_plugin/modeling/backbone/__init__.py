from .vgg import VGG, VGG_BLOCKS, build_vgg_backbone  # noqa: F401
