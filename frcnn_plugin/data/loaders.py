"""The plugin's checked data loaders with plain arguments, for Python configs (LazyConfig).

Drop-in replacements for the functions of detectron2's ``common/data/coco.py``, with the same
arguments, so a model-zoo ``dataloader`` config only changes its targets
(:func:`frcnn_plugin.lazy.checked_dataloader` does it):

* :func:`build_frcnn_train_loader` for ``build_detection_train_loader``: unreadable images are
  skipped and counted (:class:`~frcnn_plugin.data.mappers.SkipBadSamples`);
* :func:`checked_train_dataset_dicts` for ``get_detection_dataset_dicts`` (training): clear
  errors for missing or malformed files, invalid boxes dropped or an error;
* :func:`test_dataset_dicts` and :func:`build_frcnn_test_loader` for the test side: every image
  file checked before evaluation, an unreadable one named.

The YAML trainer (:class:`frcnn_plugin.engine.Trainer`) builds the same objects from a CfgNode.
"""
from detectron2.config import get_cfg
from detectron2.data import (
    DatasetFromList,
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.data.build import _train_loader_from_config

from ..errors import ConfigError
from .checks import checked_test_dataset_dicts, checked_train_dataset_dicts
from .mappers import NameBadImages, SkipBadSamples

__all__ = [
    "detectron2_train_sampler",
    "build_frcnn_test_loader",
    "build_frcnn_train_loader",
    "checked_train_dataset_dicts",
    "test_dataset_dicts",
    "wrap_train_mapper",
]


def wrap_train_mapper(mapper, dataset, max_consecutive_bad_samples=10, seed=0):
    """``(dataset, mapper)`` for a training loader: the data set as detectron2's
    ``DatasetFromList`` and the mapper wrapped in :class:`SkipBadSamples`."""
    if not isinstance(dataset, DatasetFromList):
        dataset = DatasetFromList(list(dataset), copy=False)
    mapper = SkipBadSamples(
        mapper, dataset, max_consecutive=max_consecutive_bad_samples, seed=max(int(seed), 0)
    )
    return dataset, mapper


def _identity(x):
    return x


def detectron2_train_sampler(dataset, seed=-1):
    """The training sampler that detectron2's YAML loader (``build_detection_train_loader(cfg)``)
    makes for ``dataset`` with ``SEED`` = ``seed``: a ``TrainingSampler`` seeded with ``seed``
    in upstream main, with a seed shared by all processes in v0.6. Python configs get the same
    sampler, so that a config's Python twin draws the images in the same order."""
    cfg = get_cfg()
    cfg.SEED = int(seed)
    return _train_loader_from_config(cfg, mapper=_identity, dataset=dataset)["sampler"]


def build_frcnn_train_loader(
    dataset,
    *,
    mapper,
    total_batch_size,
    sampler=None,
    aspect_ratio_grouping=True,
    num_workers=0,
    max_consecutive_bad_samples=10,
    seed=0,
):
    """detectron2's ``build_detection_train_loader`` (same arguments) over ``dataset`` (a list
    of dataset dicts, e.g. from :func:`checked_train_dataset_dicts`) with unreadable images
    skipped: ``max_consecutive_bad_samples`` in a row stop training
    (``DATALOADER.MAX_CONSECUTIVE_BAD_SAMPLES``). ``seed`` is the config's seed (``SEED``): it
    picks the replacements and, without a ``sampler``, seeds the sampler as detectron2's YAML
    loader does (:func:`detectron2_train_sampler`)."""
    dataset, mapper = wrap_train_mapper(mapper, dataset, max_consecutive_bad_samples, seed)
    if sampler is None:
        sampler = detectron2_train_sampler(dataset, seed)
    return build_detection_train_loader(
        dataset=dataset,
        mapper=mapper,
        sampler=sampler,
        total_batch_size=total_batch_size,
        aspect_ratio_grouping=aspect_ratio_grouping,
        num_workers=num_workers,
    )


def test_dataset_dicts(names, filter_empty=False):
    """The images of one test data set (``names``: its name, or a list of one), every image
    file checked (:func:`checked_test_dataset_dicts`). ``filter_empty`` is accepted for the
    signature of ``get_detection_dataset_dicts`` in detectron2's configs; test sets keep every
    image, so only False is allowed."""
    if not isinstance(names, str):
        names = list(names)
        if len(names) != 1:
            raise ConfigError(
                "dataloader.test.dataset.names={!r}: allowed: one data set (evaluate several "
                "with one config each)".format(names)
            )
        names = names[0]
    if filter_empty:
        raise ConfigError("dataloader.test.dataset.filter_empty=True; allowed: False (test sets "
                          "keep every image)")
    return checked_test_dataset_dicts(names)


def build_frcnn_test_loader(dataset, *, mapper, num_workers=0, dataset_name=""):
    """detectron2's ``build_detection_test_loader`` whose mapper names an unreadable image and
    its data set (``dataset_name``) in the error."""
    return build_detection_test_loader(
        dataset=dataset,
        mapper=NameBadImages(mapper, dataset_name),
        num_workers=num_workers,
    )
