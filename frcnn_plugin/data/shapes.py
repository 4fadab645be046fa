"""A small detection data set generated on the fly: coloured shapes on noisy backgrounds.

It lets the demo and the tests train and evaluate a real detector through detectron2's data
pipeline and ``COCOEvaluator`` without downloading anything. The images (PNG) and the COCO-format
annotation file are written to disk once, deterministically: the same arguments give the same
files byte for byte.

Built-in names (registered on ``import frcnn_plugin``), under
``$DETECTRON2_DATASETS/frcnn_shapes/`` (default ``./datasets``), resolved each time the data set
is used (so importing the plugin does not fix the folder: the current directory and
``DETECTRON2_DATASETS`` at the time of use count):

==========================  ========  ======  ====
name                        images    size    seed
==========================  ========  ======  ====
``frcnn_shapes_train``      256       128     0
``frcnn_shapes_val``        64        128     1
==========================  ========  ======  ====

Register other sizes with :func:`register_shapes_dataset`.
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


def _draw_image(rng, image_size, max_objects, min_size, max_size):
    """Draw one image; returns (PIL image, list of (class index, [x, y, w, h]))."""
    background = rng.randint(0, 256, size=3)
    pixels = background[None, None, :] + rng.normal(0, 12, size=(image_size, image_size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(1, max_objects + 1)):
        for _attempt in range(20):
            size = int(rng.randint(min_size, max_size + 1))
            x0, y0 = (int(v) for v in rng.randint(0, image_size - size + 1, size=2))
            box = np.array([x0, y0, x0 + size, y0 + size], dtype=np.float64)
            if all(_overlap(box, np.array(o[2])) < 0.2 for o in objects):
                break
        else:
            continue
        cls = int(rng.randint(len(SHAPES_CLASSES)))
        while True:  # a colour that stands out from the background
            color = rng.randint(0, 256, size=3)
            if np.abs(color - background).sum() > 200:
                break
        fill = tuple(int(c) for c in color)
        x1, y1 = x0 + size - 1, y0 + size - 1
        if cls == 0:
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        elif cls == 1:
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([(x0 + size / 2.0, y0), (x0, y1), (x1, y1)], fill=fill)
        objects.append((cls, [x0, y0, size, size], box.tolist()))
    return image, [(c, b) for c, b, _ in objects]


def _overlap(a, b):
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def generate_shapes_dataset(
    root, num_images, image_size=128, seed=0, max_objects=4, min_size=16, max_size=None
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
        min_size, max_size (int): side of the shapes, in pixels (default max: image_size // 2).

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
    rng = np.random.RandomState(seed)
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-shapes-", dir=parent)
    try:
        os.makedirs(os.path.join(tmp, IMAGE_DIR))
        images, annotations = [], []
        for i in range(num_images):
            image, objects = _draw_image(rng, image_size, max_objects, min_size, max_size)
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


def register_builtin_shapes(root=None):
    """Register ``frcnn_shapes_train`` / ``frcnn_shapes_val`` (unless registered already) under
    ``root`` (default: :func:`builtin_shapes_root` at the time of use)."""
    for name, n, seed in (("frcnn_shapes_train", 256, 0), ("frcnn_shapes_val", 64, 1)):
        if name not in DatasetCatalog.list():
            sub = name[len("frcnn_shapes_"):]
            folder = os.path.join(root, sub) if root else _builtin_folder(sub)
            register_shapes_dataset(name, folder, n, image_size=128, seed=seed)
