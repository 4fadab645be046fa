"""A small detection data set generated on the fly: coloured shapes on noisy backgrounds.

It lets the demo and the tests train and evaluate a real detector through detectron2's data
pipeline and ``COCOEvaluator`` without downloading anything. The images (PNG) and the COCO-format
annotation file are written to disk once, deterministically: the same arguments give the same
files byte for byte.

Built-in names (registered on ``import frcnn_plugin``), under
``$DETECTRON2_DATASETS/frcnn_shapes/`` (default ``./datasets``), resolved each time the data set
is used (so importing the plugin does not fix the folder: the current directory and
``DETECTRON2_DATASETS`` at the time of use count):

===============================  ========  ======  ====  =====================================
name                             images    size    seed  shapes
===============================  ========  ======  ====  =====================================
``frcnn_shapes_train``           256       128     0     1-4 squares, 16-64 px, little overlap
``frcnn_shapes_val``             64        128     1     as above
``frcnn_shapes_hard_train``      256       600     0     :data:`HARD_SHAPES`: up to 12, 24-250
                                                         px, h/w 1/3-3, overlap, border,
                                                         clutter, texture
``frcnn_shapes_hard_val``        64        600     1     as above
===============================  ========  ======  ====  =====================================

Register other sizes and any mix of the harder options (:data:`HARDER_OPTIONS`) with
:func:`register_shapes_dataset`.
"""
import json
import logging
import os
import shutil
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

__all__ = [
    "SHAPES_CLASSES",
    "HARDER_OPTIONS",
    "HARD_SHAPES",
    "generate_shapes_dataset",
    "register_shapes_dataset",
    "register_builtin_shapes",
    "builtin_shapes_root",
    "prepare_dataset",
]

logger = logging.getLogger(__name__)

SHAPES_CLASSES = ["square", "circle", "triangle"]
ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"

# name -> generation arguments of the data sets registered through register_shapes_dataset
_GENERATED = {}


# Harder variants (all off by default: the default data set is drawn exactly as before).
HARDER_OPTIONS = {
    "max_overlap": "largest overlap of two shapes, over the smaller one's area (default 0.2)",
    "aspect_ratios": "(lo, hi) range of the shapes' height / width, drawn log-uniformly "
    "(default (1, 1): squares)",
    "border": "shapes may cross the image border; their boxes are clipped (default False)",
    "clutter": "unannotated distractors per image, at most (lines, crosses, specks; default 0)",
    "texture": "textured backgrounds: smooth blobs, stripes and a gradient (default False)",
}


def _draw_image(rng, image_size, max_objects, min_size, max_size, max_overlap=0.2,
                aspect_ratios=(1.0, 1.0), border=False, clutter=0, texture=False):
    """Draw one image; returns (PIL image, list of (class index, [x, y, w, h])).

    ``size`` is the side of a square shape, or ``sqrt(w * h)`` with ``aspect_ratios``. Options
    at their defaults draw no extra random numbers, so the default data set is unchanged.
    """
    background = rng.randint(0, 256, size=3)
    pixels = background[None, None, :] + rng.normal(0, 12, size=(image_size, image_size, 3))
    if texture:
        pixels = pixels + _texture(rng, image_size)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    if clutter:
        _draw_clutter(rng, draw, image_size, int(rng.randint(0, clutter + 1)), min_size)
    stretch = tuple(aspect_ratios) != (1.0, 1.0)
    objects = []
    for _ in range(rng.randint(1, max_objects + 1)):
        for _attempt in range(20):
            size = int(rng.randint(min_size, max_size + 1))
            w = h = size
            if stretch:
                r = float(np.exp(rng.uniform(np.log(aspect_ratios[0]), np.log(aspect_ratios[1]))))
                w, h = max(2, int(round(size / r ** 0.5))), max(2, int(round(size * r ** 0.5)))
            if border:  # up to half of the shape outside the image
                x0 = int(rng.randint(-(w // 2), image_size - w // 2 + 1))
                y0 = int(rng.randint(-(h // 2), image_size - h // 2 + 1))
            elif stretch:
                x0 = int(rng.randint(0, max(1, image_size - w + 1)))
                y0 = int(rng.randint(0, max(1, image_size - h + 1)))
            else:
                x0, y0 = (int(v) for v in rng.randint(0, image_size - size + 1, size=2))
            box = np.array([x0, y0, x0 + w, y0 + h], dtype=np.float64)
            clipped = np.clip(box, 0, image_size)
            if border and (clipped[2] - clipped[0] < 2 or clipped[3] - clipped[1] < 2):
                continue
            if all(_overlap(clipped, np.array(o[2])) < max_overlap for o in objects):
                break
        else:
            continue
        cls = int(rng.randint(len(SHAPES_CLASSES)))
        while True:  # a colour that stands out from the background
            color = rng.randint(0, 256, size=3)
            if np.abs(color - background).sum() > 200:
                break
        fill = tuple(int(c) for c in color)
        x1, y1 = x0 + w - 1, y0 + h - 1
        if cls == 0:
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        elif cls == 1:
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([(x0 + w / 2.0, y0), (x0, y1), (x1, y1)], fill=fill)
        cx0, cy0, cx1, cy1 = (int(v) for v in clipped)
        objects.append((cls, [cx0, cy0, cx1 - cx0, cy1 - cy0], clipped.tolist()))
    return image, [(c, b) for c, b, _ in objects]


def _texture(rng, image_size):
    """A background texture to add to the pixels: smooth blobs (a coarse random field,
    upsampled), stripes of a random angle and period, and a gradient; about ±60 levels."""
    coarse = rng.normal(0, 40, size=(8, 8, 3))
    blobs = np.asarray(
        Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255))).resize(
            (image_size, image_size), Image.BICUBIC
        ),
        dtype=np.float64,
    ) - 128
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 30)
    yy, xx = np.mgrid[0:image_size, 0:image_size]
    stripes = 20 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    gradient = rng.uniform(-30, 30) * (xx / image_size - 0.5)
    return blobs + (stripes + gradient)[:, :, None]


def _draw_clutter(rng, draw, image_size, n, min_size):
    """``n`` unannotated distractors: lines, crosses and specks smaller than ``min_size``."""
    for _ in range(n):
        fill = tuple(int(c) for c in rng.randint(0, 256, size=3))
        kind = int(rng.randint(3))
        x, y = (float(v) for v in rng.uniform(0, image_size, size=2))
        if kind == 0:  # a thin line
            dx, dy = (float(v) for v in rng.uniform(-image_size / 3, image_size / 3, size=2))
            draw.line([x, y, x + dx, y + dy], fill=fill, width=int(rng.randint(1, 4)))
        elif kind == 1:  # a cross
            r = float(rng.uniform(3, max(4, min_size)))
            draw.line([x - r, y, x + r, y], fill=fill, width=2)
            draw.line([x, y - r, x, y + r], fill=fill, width=2)
        else:  # a speck, smaller than the smallest shape
            r = float(rng.uniform(1, max(2, min_size / 3)))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _overlap(a, b):
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def generate_shapes_dataset(
    root, num_images, image_size=128, seed=0, max_objects=4, min_size=16, max_size=None,
    **harder
):
    """Write ``num_images`` PNG images and a COCO-format ``annotations.json`` under ``root``.

    Does nothing if ``root/annotations.json`` exists already. The files are written to a
    temporary directory that is then renamed, so a reader never sees a partial data set and two
    processes generating the same data set at once do not corrupt it.

    Args:
        root (str): output directory.
        num_images (int): number of images (> 0).
        image_size (int): side of the square images, in pixels (>= 32).
        seed (int): seed of the random generator.
        max_objects (int): at most this many shapes per image (at least one).
        min_size, max_size (int): side of the shapes, in pixels (default max: image_size // 2);
            with ``aspect_ratios``, sqrt(width * height).
        harder: the options of :data:`HARDER_OPTIONS` (``max_overlap``, ``aspect_ratios``,
            ``border``, ``clutter``, ``texture``); none given: the default data set.

    Returns:
        str: path of the annotation file.
    """
    json_file = os.path.join(root, ANNOTATION_FILE)
    if os.path.isfile(json_file):
        return json_file
    max_size = image_size // 2 if max_size is None else max_size
    if num_images <= 0 or image_size < 32 or not 0 < min_size <= max_size <= image_size:
        raise ValueError(
            "invalid shapes data set: num_images={} (> 0), image_size={} (>= 32), "
            "min_size={} <= max_size={} <= image_size required".format(
                num_images, image_size, min_size, max_size
            )
        )
    _check_harder(harder)
    rng = np.random.RandomState(seed)
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-shapes-", dir=parent)
    try:
        os.makedirs(os.path.join(tmp, IMAGE_DIR))
        images, annotations = [], []
        for i in range(num_images):
            image, objects = _draw_image(
                rng, image_size, max_objects, min_size, max_size, **harder
            )
            file_name = "{:06d}.png".format(i)
            image.save(os.path.join(tmp, IMAGE_DIR, file_name))
            images.append(
                {"id": i + 1, "file_name": file_name, "width": image_size, "height": image_size}
            )
            for cls, (x, y, w, h) in objects:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": cls + 1,
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
        categories = [{"id": k + 1, "name": n} for k, n in enumerate(SHAPES_CLASSES)]
        with open(os.path.join(tmp, ANNOTATION_FILE), "w") as f:
            json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
        try:
            os.rename(tmp, root)
        except OSError:
            if not os.path.isfile(json_file):  # not a concurrent writer that won the race
                raise
        else:
            tmp = None
            logger.info("Generated %d shapes images under %s", num_images, root)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return json_file


def _check_harder(harder):
    unknown = sorted(set(harder) - set(HARDER_OPTIONS))
    if unknown:
        raise ValueError("unknown shapes option(s) {}; allowed: {}".format(
            unknown, ", ".join(HARDER_OPTIONS)))
    lo, hi = harder.get("aspect_ratios", (1.0, 1.0))
    if not 0 < lo <= hi:
        raise ValueError("aspect_ratios=({}, {}); allowed: 0 < lo <= hi".format(lo, hi))
    if not 0 < harder.get("max_overlap", 0.2) <= 1:
        raise ValueError("max_overlap={}; allowed: a number in (0, 1]".format(
            harder["max_overlap"]))
    if int(harder.get("clutter", 0)) < 0:
        raise ValueError("clutter={}; allowed: an integer >= 0".format(harder["clutter"]))


def register_shapes_dataset(name, root, num_images, image_size=128, seed=0, **kwargs):
    """Register a generated shapes data set under ``name`` (generated on first use).

    Args:
        root (str or callable): its folder, or a function that returns it. It is resolved each
            time the data set is used (a relative path against the current directory then), as
            detectron2 resolves the paths of its built-in data sets.
        num_images, image_size, seed, kwargs: see :func:`generate_shapes_dataset`.

    The metadata has ``evaluator_type="coco"``, so ``COCOEvaluator`` evaluates it, and, once the
    data set is used, ``json_file`` and ``image_root``.
    """
    _GENERATED[name] = dict(
        root=root, num_images=num_images, image_size=image_size, seed=seed, **kwargs
    )

    def load():
        json_file, image_root = prepare_dataset(name)
        return load_coco_json(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(evaluator_type="coco", thing_classes=list(SHAPES_CLASSES))


def _set_paths(name, json_file, image_root):
    """Set the metadata's file paths; replace them (and the metadata) if the folder moved."""
    meta = MetadataCatalog.get(name)
    if meta.get("json_file", json_file) != json_file:  # e.g. DETECTRON2_DATASETS changed
        MetadataCatalog.remove(name)
        meta = MetadataCatalog.get(name).set(
            evaluator_type="coco", thing_classes=list(SHAPES_CLASSES)
        )
    meta.set(json_file=json_file, image_root=image_root)


def prepare_dataset(name):
    """Make sure a data set's files exist before something reads them directly (an evaluator
    reads ``metadata.json_file``). Generates the plugin's shapes data sets, in the folder their
    root names now, and sets their metadata's ``json_file`` and ``image_root``; no-op for other
    data sets.

    Returns:
        (json_file, image_root) of a shapes data set (absolute paths); None for other names.
    """
    if name not in _GENERATED:
        return None
    args = dict(_GENERATED[name])
    root = args.pop("root")
    root = os.path.abspath(os.path.expanduser(root() if callable(root) else root))
    json_file = generate_shapes_dataset(root, **args)
    image_root = os.path.join(root, IMAGE_DIR)
    _set_paths(name, json_file, image_root)
    return json_file, image_root


def builtin_shapes_root():
    """``$DETECTRON2_DATASETS/frcnn_shapes`` (``DETECTRON2_DATASETS`` defaults to
    ``datasets``, relative to the current directory), read now."""
    return os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")),
                        "frcnn_shapes")


def _builtin_folder(sub):
    return lambda: os.path.join(builtin_shapes_root(), sub)


# The harder built-in variant: 600 px images (shown at 224 px by its config), up to 12 shapes
# of 24-250 px with h/w from 1/3 to 3, overlapping up to half, crossing the border, among up to
# 8 distractors on textured backgrounds.
HARD_SHAPES = dict(
    image_size=600, max_objects=12, min_size=24, max_size=250, max_overlap=0.5,
    aspect_ratios=(1 / 3, 3.0), border=True, clutter=8, texture=True,
)


def register_builtin_shapes(root=None):
    """Register ``frcnn_shapes_{train,val}`` (the demo's) and ``frcnn_shapes_hard_{train,val}``
    (:data:`HARD_SHAPES`), unless registered already, under ``root`` (default:
    :func:`builtin_shapes_root` at the time of use). Files are written on first use only."""
    for name, n, seed, kwargs in (
        ("frcnn_shapes_train", 256, 0, dict(image_size=128)),
        ("frcnn_shapes_val", 64, 1, dict(image_size=128)),
        ("frcnn_shapes_hard_train", 256, 0, HARD_SHAPES),
        ("frcnn_shapes_hard_val", 64, 1, HARD_SHAPES),
    ):
        if name not in DatasetCatalog.list():
            sub = name[len("frcnn_shapes_"):]
            folder = os.path.join(root, sub) if root else _builtin_folder(sub)
            register_shapes_dataset(name, folder, n, seed=seed, **kwargs)
