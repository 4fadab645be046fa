"""Robustness to image corruptions (``tools/test_robustness.py``): a detector evaluated on a data
set whose test images are corrupted by the ``imagecorruptions`` package (Michaelis et al. 2019,
"Benchmarking Robustness in Object Detection", COCO-C), at severities 1 to 5.

The corruption is a detectron2 augmentation (:class:`Corrupt`, giving a
:class:`CorruptionTransform`) put first in the test mapper's augmentations, so it applies to the
image at its original size, before the test-time resize, as in COCO-C; the boxes are unchanged.
Each image's noise is seeded from the image, the corruption and the severity: a run is
reproducible. The summary is the paper's: mPC, the mean of the metric over the corruptions and
severities evaluated (each corruption's mean over its severities, then the mean over
corruptions), and rPC = mPC / the clean metric.

``imagecorruptions`` 1.1.2 (its latest release) predates scikit-image 0.19, setuptools 81 and
NumPy 2: :func:`import_imagecorruptions` imports it with a ``pkg_resources.resource_filename``
stand-in when setuptools no longer has ``pkg_resources``, gives its module a ``gaussian`` that
turns the removed ``multichannel=True`` into ``channel_axis=-1``, and under NumPy 2 a numpy with
the removed ``np.float_`` alias; nothing else is changed, nothing outside its module.
"""
import importlib
import importlib.util
import inspect
import os
import sys
import types
import warnings
import zlib
from typing import Dict, List, Sequence

import numpy as np

from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from fvcore.transforms.transform import Transform

from ..errors import UserError

__all__ = [
    "ImageSubsetEvaluator",
    "CORRUPTION_GROUPS",
    "COMMON_CORRUPTIONS",
    "Corrupt",
    "CorruptionTransform",
    "SEVERITIES",
    "expand_corruptions",
    "import_imagecorruptions",
    "robustness_summary",
]

# imagecorruptions' names: the 15 of the benchmark (ImageNet-C / COCO-C) in its order, then the
# 4 held-out ones
COMMON_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
VALIDATION_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CORRUPTION_GROUPS = {
    "common": COMMON_CORRUPTIONS,
    "validation": VALIDATION_CORRUPTIONS,
    "all": COMMON_CORRUPTIONS + VALIDATION_CORRUPTIONS,
    "noise": COMMON_CORRUPTIONS[0:3],
    "blur": COMMON_CORRUPTIONS[3:7],
    "weather": COMMON_CORRUPTIONS[7:11],
    "digital": COMMON_CORRUPTIONS[11:15],
}
SEVERITIES = (1, 2, 3, 4, 5)


def expand_corruptions(names: Sequence[str]) -> List[str]:
    """Corruption names and group names (:data:`CORRUPTION_GROUPS`) -> corruption names, in
    order, without repeats.

    Raises:
        UserError: an unknown name (the message lists the allowed ones).
    """
    out = []
    for name in names:
        found = CORRUPTION_GROUPS.get(name, (name,) if name in CORRUPTION_GROUPS["all"] else ())
        if not found:
            raise UserError("Unknown corruption {!r}; allowed: {}, or a group: {}".format(
                name, ", ".join(CORRUPTION_GROUPS["all"]), ", ".join(CORRUPTION_GROUPS)))
        out.extend(n for n in found if n not in out)
    return out


def _resource_filename_shim():
    def resource_filename(package, resource):
        spec = importlib.util.find_spec(package)
        return os.path.join(os.path.dirname(spec.origin), resource)

    module = types.ModuleType("pkg_resources")
    module.resource_filename = resource_filename
    return module


def import_imagecorruptions():
    """The ``imagecorruptions`` module, working with today's scikit-image and setuptools (see
    the module docstring).

    Raises:
        UserError: the package is not installed.
    """
    if "imagecorruptions" in sys.modules:
        return sys.modules["imagecorruptions"]
    if importlib.util.find_spec("imagecorruptions") is None:
        raise UserError("The imagecorruptions package is not installed; allowed: pip install "
                        "imagecorruptions (tools/setup_env.sh installs it)")
    shim = None
    with warnings.catch_warnings():  # its deprecation warning: not the user's business
        warnings.simplefilter("ignore")
        try:
            import pkg_resources  # noqa: F401  (a probe: setuptools >= 81 has none)
        except ImportError:
            shim = sys.modules["pkg_resources"] = _resource_filename_shim()
    try:
        with warnings.catch_warnings():  # scipy.ndimage.interpolation's deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module("imagecorruptions")
    finally:
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]
    corruptions = module.corruptions
    gaussian = corruptions.gaussian
    if "multichannel" not in inspect.signature(gaussian).parameters:
        def gaussian_compat(image, *args, multichannel=None, **kwargs):
            if multichannel:
                kwargs.setdefault("channel_axis", -1)
            return gaussian(image, *args, **kwargs)

        corruptions.gaussian = gaussian_compat
    if not hasattr(np, "float_"):  # NumPy 2 removed the alias its fog corruption uses
        corruptions.np = _NumpyWithFloatAlias()
    return module


class _NumpyWithFloatAlias(types.ModuleType):
    """numpy, with ``float_`` (``float64``) back, for imagecorruptions' module only."""

    float_ = np.float64

    def __init__(self):
        super().__init__("numpy")

    def __getattr__(self, name):
        return getattr(np, name)


class CorruptionTransform(Transform):
    """``imagecorruptions.corrupt`` of an image (uint8 HxWx3 in ``image_format``; the package
    works on RGB), with numpy's global RNG seeded by ``seed`` and restored after; boxes and
    other coordinates unchanged."""

    def __init__(self, corruption: str, severity: int, image_format: str = "RGB", seed: int = 0):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img):
        corrupt = import_imagecorruptions().corrupt
        bgr = self.image_format == "BGR"
        rgb = np.ascontiguousarray(img[:, :, ::-1] if bgr else img)
        if rgb.ndim == 2 or rgb.shape[2] == 1:  # grey: the package wants 3 channels
            rgb = np.repeat(rgb.reshape(rgb.shape[0], rgb.shape[1], 1), 3, axis=2)
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            out = corrupt(rgb, corruption_name=self.corruption, severity=self.severity)
        finally:
            np.random.set_state(state)
        out = np.clip(np.asarray(out), 0, 255).astype(np.uint8)[: img.shape[0], : img.shape[1]]
        return np.ascontiguousarray(out[:, :, ::-1] if bgr else out)

    def apply_coords(self, coords):
        return coords

    def apply_segmentation(self, segmentation):
        return segmentation


class Corrupt(T.Augmentation):
    """The augmentation that gives a :class:`CorruptionTransform`, seeded from the image."""

    def __init__(self, corruption: str, severity: int, image_format: str = "RGB"):
        super().__init__()
        self._init(locals())

    def get_transform(self, image):
        seed = zlib.crc32(np.ascontiguousarray(image).tobytes()) ^ (self.severity * 7919) ^ \
            zlib.crc32(self.corruption.encode())
        return CorruptionTransform(self.corruption, self.severity, self.image_format,
                                   seed % (2 ** 32))


def robustness_summary(table: Dict[str, Dict[int, float]], clean: float) -> Dict[str, float]:
    """mPC (each corruption's mean over its severities, then the mean over corruptions) and
    rPC = mPC / ``clean`` (NaN when the clean metric is 0); also each corruption's mean."""
    means = {c: sum(row.values()) / len(row) for c, row in table.items() if row}
    mpc = sum(means.values()) / len(means) if means else float("nan")
    rpc = mpc / clean if clean else float("nan")
    return {"mPC": mpc, "rPC": rpc, "clean": clean, "per_corruption": means}


# the metrics ImageSubsetEvaluator sets to 0 when the model detected nothing
_ZERO_WITHOUT_DETECTIONS = ("AP", "AP50", "AP75")


class ImageSubsetEvaluator(DatasetEvaluator):
    """A data set's evaluator scored on the images it was shown (``img_ids``), with AP 0 when
    the model detected nothing.

    detectron2's ``COCOEvaluator`` scores every image of the data set unless its ``evaluate``
    gets ``img_ids``, so a run on the first ``-n`` images would count the others' boxes as
    missed; and it reports NaN when there is no detection at all, where every ground-truth box
    is missed: AP, AP50 and AP75 0 (a corruption that blanks the image, e.g. contrast at
    severity 5, would otherwise make mPC NaN). Other evaluators are scored as they are (the
    tool refuses a subset of a Pascal VOC data set, whose evaluator scores the whole split)."""

    def __init__(self, evaluator: DatasetEvaluator, img_ids: Sequence):
        self.evaluator, self.img_ids = evaluator, list(img_ids)
        self.num_detections = 0

    def reset(self):
        self.evaluator.reset()
        self.num_detections = 0

    def process(self, inputs, outputs):
        self.evaluator.process(inputs, outputs)
        self.num_detections += sum(len(o["instances"]) for o in outputs if "instances" in o)

    def evaluate(self):
        if isinstance(self.evaluator, COCOEvaluator):
            results = self.evaluator.evaluate(img_ids=self.img_ids)
        else:
            results = self.evaluator.evaluate()
        if self.num_detections == 0 and results and "bbox" in results:
            results["bbox"] = dict(results["bbox"], **{
                k: 0.0 for k in _ZERO_WITHOUT_DETECTIONS if k in results["bbox"]})
        return results
