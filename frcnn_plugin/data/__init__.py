from .dataset_mapper import INPUT_SCALE_KEY, FRCNNDatasetMapper  # noqa: F401
from .own import register_config_datasets, register_dataset, register_datasets  # noqa: F401
from .shapes import (  # noqa: F401
    SHAPES_CLASSES,
    generate_shapes_dataset,
    prepare_dataset,
    register_builtin_shapes,
    register_shapes_dataset,
)

register_builtin_shapes()
