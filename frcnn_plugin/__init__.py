"""frcnn_plugin: the classic Faster R-CNN (Ren et al., 2015) with VGG16 as detectron2 components.

Importing this package registers every component with detectron2's registries; call
:func:`add_frcnn_config` on a config before merging a plugin YAML file into it.
"""
__version__ = "0.1.0"

try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "frcnn_plugin needs detectron2, which is not published on PyPI. Run "
        "`bash tools/setup_env.sh` (or `make test`) from the frcnn_plugin repository to install "
        "it, or install detectron2 from source: "
        "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
    ) from e

from .config import add_frcnn_config  # noqa: E402,F401
from . import data  # noqa: E402,F401  (registers the generated demo data sets)
from .modeling import (  # noqa: E402,F401
    FRCNN_SAMPLER_REGISTRY,
    VGG,
    BalancedRandomSampler,
    FRCNNAnchorGenerator,
    FRCNNGeneralizedRCNN,
    FRCNNROIHeads,
    FRCNNRPN,
    SoftmaxRPNHead,
    VGGFCHead,
    build_sampler,
    build_vgg_backbone,
)
