#!/usr/bin/env python
"""Draw a data set's images with their boxes and class names (detectron2's
``tools/visualize_data.py``, for YAML and Python configs and ``DATASETS.REGISTER`` data sets).

    python tools/browse_dataset.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --source annotation --output-dir output/browse [--dataset frcnn_shapes_val] [-n 16]
    python tools/browse_dataset.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py \
        --source dataloader --contact-sheet output/browse.png

``--source annotation``: the raw annotations of ``--dataset`` (default: the config's first
training data set); the boxes the data checks drop are drawn dashed red with the reason, and
an image the training loader refuses (no usable annotation left, unreadable file) carries a red
banner with the reason. ``--source dataloader``: what the config's training loader gives after
its mapper's augmentation (resize, flip, ...), i.e. the boxes the model is trained on.
Output: one PNG per image in ``--output-dir`` or one ``--contact-sheet`` PNG (tiles of
``--tile`` px), written atomically; both are checked before any work (a place that can be
written; an existing sheet, or the pictures of an earlier run in the folder, refused unless
``--overwrite``). A user's mistake ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the
traceback). The logic is ``frcnn_plugin.inspection.browse``.
"""
import collections
import logging
import os

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from PIL import Image

from frcnn_plugin.cli import ConfigError, int_in_range, run_cli
from frcnn_plugin.config import with_keys
from frcnn_plugin.engine import Trainer
from frcnn_plugin.inspection.browse import (
    annotation_views,
    contact_sheet,
    draw_view,
    loader_views,
)
from frcnn_plugin.inspection.cli import LazyInspectionConfig, input_parser, setup_cfg
from frcnn_plugin.lazy import lazy_config_errors
from frcnn_plugin.outputs import check_output_dir, check_output_file, save_image

MAX_COUNT = 100000
# what --output-dir holds after a run: 00000_<image name>.png, ...
PICTURES = ("[0-9][0-9][0-9][0-9][0-9]_*.png",)


def argument_parser():
    parser = input_parser(__doc__.split("\n")[0], image_input=False, weights=False)
    parser.add_argument("--source", choices=("annotation", "dataloader"), default="annotation",
                        help="the raw annotations (default) or the training loader's output")
    parser.add_argument("--dataset", metavar="NAME",
                        help="a registered data set (default: the config's first training one)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--output-dir", metavar="DIR", help="one PNG per image")
    out.add_argument("--contact-sheet", metavar="FILE", help="one PNG with all images")
    parser.add_argument("-n", "--num-images", type=int_in_range(1, MAX_COUNT), default=16, metavar="N",
                        help="images to draw (default 16)")
    parser.add_argument("--tile", type=int_in_range(1, MAX_COUNT), default=256,
                        help="contact sheet tile size in px (default 256)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def _check_outputs(args):
    """Before any work: a place that can be written, of the right kind, without an earlier
    result unless --overwrite."""
    if args.contact_sheet:
        check_output_file(args.contact_sheet, "--contact-sheet", args.overwrite)
    else:
        check_output_dir(args.output_dir, "--output-dir", PICTURES, args.overwrite)


def _views(cfg, args):
    lazy = isinstance(cfg, LazyInspectionConfig)
    name = args.dataset or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None)
    if not name:
        raise ConfigError("The config has no training data set; allowed: --dataset NAME")
    if args.source == "annotation":
        filter_empty = True if lazy else cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        return name, list(annotation_views(name, cfg.INPUT.FORMAT, filter_empty,
                                           args.num_images))
    if lazy:
        loader_cfg = cfg.lazy.dataloader.train
        loader_cfg.dataset.names = name
        loader_cfg.total_batch_size = 1
        with lazy_config_errors("the training data loader"):
            loader = instantiate(loader_cfg)
    else:
        loader = Trainer.build_train_loader(with_keys(cfg, {
            "DATASETS.TRAIN": (name,), "SOLVER.IMS_PER_BATCH": 1}))
    return name, loader_views(loader, name, cfg.INPUT.FORMAT, args.num_images)


def _image(picture):
    return picture if isinstance(picture, Image.Image) else Image.fromarray(picture)


def main(argv=None):
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    _check_outputs(args)
    cfg = setup_cfg(args.config_file, args.opts, allow_lazy=True)
    name, views = _views(cfg, args)
    metadata = MetadataCatalog.get(name)
    pictures = [draw_view(v, metadata) for v in views]
    if args.contact_sheet:
        save_image(_image(contact_sheet(pictures, tile=args.tile)), args.contact_sheet)
        written = [args.contact_sheet]
    else:
        written = []
        for i, (view, picture) in enumerate(zip(views, pictures)):
            path = os.path.join(args.output_dir, "{:05d}_{}.png".format(
                i, os.path.splitext(view.name)[0]))
            save_image(_image(picture), path)  # atomically, the folder created
            written.append(path)
    refused = collections.Counter(v.refused for v in views if v.refused)
    dropped = collections.Counter(lbl.split(")")[0] + ")" for v in views
                                  for lbl, d in zip(v.labels, v.dropped) if d)
    print("{} image(s) of {} ({}): {} box(es) drawn; {} refused{}; {} box(es) dropped{}".format(
        len(views), name, args.source, sum(len(v.boxes) for v in views), sum(refused.values()),
        "".join(" [{}: {}]".format(k, n) for k, n in refused.items()), sum(dropped.values()),
        "".join(" [{}: {}]".format(k, n) for k, n in dropped.items())))
    print("Wrote " + (written[0] if args.contact_sheet else "{} PNG file(s) to {}".format(
        len(written), args.output_dir)))
    return {"dataset": name, "views": views, "files": written}


if __name__ == "__main__":
    run_cli(main)
