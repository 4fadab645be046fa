"""Tiny data sets in COCO and Pascal VOC format, written by the tests themselves: 64x64 images
with one or two filled rectangles (class 0 red, class 1 blue) on a grey background."""
import json
import os

import numpy as np
from PIL import Image

CLASSES = ["cat", "dog"]
CATEGORY_IDS = [5, 9]  # not 1, 2: the COCO ids must be mapped to and from contiguous ones
COLORS = [(220, 30, 30), (30, 30, 220)]
# per image: (class, [x0, y0, x1, y1])
OBJECTS = [
    [(0, [4, 6, 30, 34])],
    [(1, [30, 20, 60, 58]), (0, [2, 2, 20, 18])],
    [(1, [10, 10, 42, 40])],
    [(0, [34, 4, 62, 30]), (1, [4, 36, 28, 62])],
]


def draw(objects, seed):
    pixels = np.random.RandomState(seed).normal(128, 10, size=(64, 64, 3))
    for cls, (x0, y0, x1, y1) in objects:
        pixels[y0:y1, x0:x1] = COLORS[cls]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_coco(root):
    """``root/images/*.png`` and ``root/annotations.json``; returns (json_file, image_root)."""
    image_root = os.path.join(root, "images")
    os.makedirs(image_root)
    images, annotations = [], []
    for i, objects in enumerate(OBJECTS):
        name = "img{}.png".format(i)
        draw(objects, i).save(os.path.join(image_root, name))
        images.append({"id": 100 + i, "file_name": name, "width": 64, "height": 64})
        for cls, (x0, y0, x1, y1) in objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": 100 + i,
                "category_id": CATEGORY_IDS[cls], "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
            })
    categories = [{"id": c, "name": n} for c, n in zip(CATEGORY_IDS, CLASSES)]
    json_file = os.path.join(root, "annotations.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return json_file, image_root


_VOC_OBJECT = """  <object>
    <name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>
  </object>
"""


def write_voc(root, split="test"):
    """A VOC2007-style folder: Annotations/*.xml, ImageSets/Main/<split>.txt, JPEGImages/*.jpg.
    Boxes in VOC's 1-based pixel coordinates. Returns root."""
    for sub in ("Annotations", os.path.join("ImageSets", "Main"), "JPEGImages"):
        os.makedirs(os.path.join(root, sub))
    ids = []
    for i, objects in enumerate(OBJECTS):
        file_id = "00{:04d}".format(i + 1)
        ids.append(file_id)
        draw(objects, i).save(os.path.join(root, "JPEGImages", file_id + ".jpg"), quality=95)
        xml = "<annotation>\n  <filename>{}.jpg</filename>\n".format(file_id)
        xml += "  <size><width>64</width><height>64</height><depth>3</depth></size>\n"
        for cls, (x0, y0, x1, y1) in objects:
            xml += _VOC_OBJECT.format(name=CLASSES[cls], x0=x0 + 1, y0=y0 + 1, x1=x1, y1=y1)
        with open(os.path.join(root, "Annotations", file_id + ".xml"), "w") as f:
            f.write(xml + "</annotation>\n")
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return root


def write_config(path, base, entries, train, test, num_classes=2):
    """A YAML config: ``base`` + DATASETS.REGISTER ``entries`` + TRAIN/TEST + NUM_CLASSES."""
    def entry(e):
        return "    - {" + ", ".join("{}: {}".format(k, json.dumps(v)) for k, v in e.items()) + "}"

    text = "_BASE_: {}\nMODEL:\n  ROI_HEADS:\n    NUM_CLASSES: {}\nDATASETS:\n  REGISTER:\n".format(
        json.dumps(base), num_classes)
    text += "\n".join(entry(e) for e in entries) + "\n"
    text += "  TRAIN: {}\n  TEST: {}\n".format(json.dumps(list(train)), json.dumps(list(test)))
    with open(path, "w") as f:
        f.write(text)
    return str(path)
