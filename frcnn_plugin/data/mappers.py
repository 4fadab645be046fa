"""Per-sample fault handling around a detectron2 mapper (``DatasetMapper``).

Training (:class:`SkipBadSamples`): a sample whose image cannot be used (missing file, corrupt or
truncated file, size other than the annotation's ``width``/``height``) is skipped with a warning
naming the file and the reason, and replaced by another random sample of the data set; the number
of skips reaches the trainer in each returned dict (key :data:`SKIPPED_KEY`), which counts them in
EventStorage as ``data/skipped_samples``. ``DATALOADER.MAX_CONSECUTIVE_BAD_SAMPLES`` skips in a row
stop training with an error (the data set is broken, not a few files).

The replacement is done here rather than by returning None: detectron2 v0.6's ``MapDataset``
retries with ``random.sample(set, ...)``, a ``TypeError`` on Python >= 3.11.

Grayscale, palette, CMYK or RGBA images need no handling here: detectron2's ``read_image``
converts every image to ``INPUT.FORMAT`` (RGBA loses its alpha channel).

Evaluation (:class:`NameBadImages`): an unreadable image is an error naming the file and the data
set, since skipping it would change the evaluated set.
"""
import logging
import random
import struct
import zlib

from PIL import Image

from ..errors import BadImageError, ConfigError

__all__ = ["BAD_IMAGE_ERRORS", "SKIPPED_KEY", "SkipBadSamples", "NameBadImages", "pop_skipped"]

logger = logging.getLogger(__name__)

# What reading or decoding a bad image file raises: OSError (missing file, PIL's
# UnidentifiedImageError and "image file is truncated"), SyntaxError ("broken PNG file"),
# ValueError (detectron2's SizeMismatchError, unsupported modes), and low-level decoder errors.
BAD_IMAGE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)
SKIPPED_KEY = "frcnn_skipped_samples"


def _name(dataset_dict):
    return "{} (image id {})".format(dataset_dict.get("file_name"), dataset_dict.get("image_id"))


class SkipBadSamples:
    """Wrap a training mapper: skip unusable samples, replacing them by random other ones.

    Args:
        mapper (callable): dataset dict -> model input dict (e.g. ``DatasetMapper(cfg, True)``);
            it may raise one of :data:`BAD_IMAGE_ERRORS` or return None for a bad sample.
        dataset (Sequence[dict]): the data set the loader samples from (e.g. detectron2's
            ``DatasetFromList``), to draw replacements from. On Linux the data-loader workers
            share it with the loader (fork), so it costs no memory.
        max_consecutive (int): skips in a row that raise :class:`~frcnn_plugin.cli.BadImageError`
            (a ``RuntimeError``).
        seed (int): seed of the choice of replacements.
    """

    def __init__(self, mapper, dataset, max_consecutive=10, seed=0):
        if max_consecutive < 1:
            raise ConfigError(
                "DATALOADER.MAX_CONSECUTIVE_BAD_SAMPLES={!r}; allowed: an integer >= 1".format(
                    max_consecutive
                )
            )
        self.mapper = mapper
        self.dataset = dataset
        self.max_consecutive = int(max_consecutive)
        self.num_skipped = 0  # in this process (each data-loader worker has its own)
        self._rng = random.Random(seed)

    def __call__(self, dataset_dict):
        skipped = 0
        while True:
            try:
                out = self.mapper(dataset_dict)
                reason = "the mapper returned None" if out is None else None
            except BAD_IMAGE_ERRORS as e:
                out, reason = None, "{}: {}".format(type(e).__name__, e)
            if out is not None:
                if skipped:
                    out[SKIPPED_KEY] = skipped
                return out
            skipped += 1
            self.num_skipped += 1
            logger.warning(
                "Skipping training image %s: %s [%d bad sample(s) skipped in this process]",
                _name(dataset_dict), reason, self.num_skipped,
            )
            if skipped >= self.max_consecutive:
                raise BadImageError(
                    "{} training images in a row could not be used "
                    "(DATALOADER.MAX_CONSECUTIVE_BAD_SAMPLES={}); the last one: {}: {}. Check "
                    "the data set's image files.".format(
                        skipped, self.max_consecutive, _name(dataset_dict), reason
                    )
                )
            dataset_dict = self.dataset[self._rng.randrange(len(self.dataset))]


class NameBadImages:
    """Wrap a test mapper: an unreadable image raises an error naming the file and data set."""

    def __init__(self, mapper, dataset_name):
        self.mapper = mapper
        self.dataset_name = dataset_name

    def __call__(self, dataset_dict):
        try:
            return self.mapper(dataset_dict)
        except BAD_IMAGE_ERRORS as e:
            raise BadImageError(
                "Cannot read test image {} of data set {!r} ({}: {}); evaluation needs every "
                "image: fix the file or remove it from the annotations".format(
                    _name(dataset_dict), self.dataset_name, type(e).__name__, e
                )
            ) from e


def pop_skipped(batch):
    """Remove :data:`SKIPPED_KEY` from each dict of a batch; returns the total."""
    return sum(int(d.pop(SKIPPED_KEY, 0)) for d in batch if isinstance(d, dict))
