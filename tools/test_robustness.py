#!/usr/bin/env python
"""Evaluate a checkpoint on a data set under image corruptions (COCO-C: the ``imagecorruptions``
package, severities 1-5): AP per corruption and severity, mPC and rPC.

    python tools/test_robustness.py --config-file configs/vgg16_frcnn_shapes_demo.yaml \
        --weights output/shapes_demo/model_final.pth --output-dir output/robustness \
        [--corruptions common] [--severities 1 2 3 4 5] [--dataset NAME] [-n N] [KEY VALUE ...]
    python tools/test_robustness.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py \
        --weights W --output-dir OUT --corruptions noise fog --severities 1 3 5

``--corruptions``: names of ``imagecorruptions`` (gaussian_noise, ..., jpeg_compression, and
the held-out speckle_noise, gaussian_blur, spatter, saturate) or groups (common: the 15 of the
benchmark, the default; noise, blur, weather, digital, validation, all). The clean data set is
evaluated first, by the same path as ``tools/train_net.py --eval-only`` (the config's test
mapper and the data set's evaluator), then each corruption and severity with the corruption
applied to the original image before the test-time resize. ``--metric`` (AP, AP50 or AP75) is
what the table, mPC (mean over corruptions of the mean over severities) and rPC (mPC / clean)
use. Writes into ``--output-dir`` (checked before any work: a folder that can be written,
refused if it holds an earlier run's results unless ``--overwrite``; each file atomically):
robustness.json, robustness.csv (one row per cell, the clean row first),
robustness.md (the table) and robustness.png (the metric against severity per corruption). A
user's mistake ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the
traceback). The logic is ``frcnn_plugin.analysis.robustness``.
"""
import contextlib
import copy
import csv
import io
import logging
import os
import tempfile

from detectron2.config import instantiate
from detectron2.data import DatasetMapper, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.evaluation import inference_on_dataset
from tqdm import tqdm

from frcnn_plugin.analysis.robustness import (
    CORRUPTION_GROUPS,
    SEVERITIES,
    Corrupt,
    ImageSubsetEvaluator,
    expand_corruptions,
    import_imagecorruptions,
    robustness_summary,
)
from frcnn_plugin.cli import ConfigError, int_in_range, run_cli, weights_of
from frcnn_plugin.data.checks import checked_test_dataset_dicts
from frcnn_plugin.data.loaders import build_frcnn_test_loader
from frcnn_plugin.engine.trainer import evaluator_for_dataset
from frcnn_plugin.inspection.cli import (
    LazyInspectionConfig,
    build_inspection_model,
    input_parser,
    setup_cfg,
)
from frcnn_plugin.lazy import lazy_config_errors
from frcnn_plugin.outputs import check_output_dir, save_figure, write_json, write_text

METRICS = ("AP", "AP50", "AP75")
RESULTS = tuple("robustness" + ext for ext in (".json", ".csv", ".md", ".png"))


def argument_parser():
    parser = input_parser(__doc__.split("\n")[0], image_input=False)
    parser.add_argument("--output-dir", required=True, metavar="DIR")
    parser.add_argument("--corruptions", nargs="+", default=["common"], metavar="NAME",
                        help="corruptions or groups ({}; default: common)".format(
                            ", ".join(CORRUPTION_GROUPS)))
    parser.add_argument("--severities", nargs="+", type=int_in_range(min(SEVERITIES), max(SEVERITIES)),
                        default=list(SEVERITIES),
                        metavar="S", help="severities 1 ... 5 (default: all)")
    parser.add_argument("--dataset", metavar="NAME",
                        help="a registered data set (default: the config's first test one)")
    parser.add_argument("-n", "--num-images", type=int_in_range(1), metavar="N",
                        help="only the first N images of the data set")
    parser.add_argument("--metric", choices=METRICS, default="AP",
                        help="the metric of the table, mPC and rPC (default AP)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --output-dir")
    return parser


def _base(cfg, name, num_images):
    """The test images and the config's test mapper (as --eval-only uses them)."""
    every = checked_test_dataset_dicts(name)
    dicts = every[:num_images]
    if len(dicts) < len(every) and MetadataCatalog.get(name).get(
            "evaluator_type", None) == "pascal_voc":
        raise ConfigError(
            "-n {} with the Pascal VOC data set {!r}: its evaluator scores every image of the "
            "split ({}); allowed: no -n (all images), or a COCO-format data set".format(
                num_images, name, len(every)))
    if isinstance(cfg, LazyInspectionConfig):
        with lazy_config_errors("the test mapper"):
            mapper = instantiate(cfg.lazy.dataloader.test.mapper)
    else:
        mapper = DatasetMapper(cfg, False)
    return dicts, mapper


def evaluate(model, dicts, mapper, name, metric, corruption=None, level=None, image_format="RGB"):
    """The ``metric`` of ``model`` on ``dicts``, the images corrupted if ``corruption``."""
    if corruption is not None:
        mapper = copy.copy(mapper)
        mapper.augmentations = T.AugmentationList(
            [Corrupt(corruption, level, image_format)] + list(mapper.augmentations.augs))
    loader = build_frcnn_test_loader(dicts, mapper=mapper, num_workers=0, dataset_name=name)
    with tempfile.TemporaryDirectory(prefix="frcnn-robustness-") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its table
        evaluator = ImageSubsetEvaluator(evaluator_for_dataset(name, tmp),
                                         [d["image_id"] for d in dicts])
        results = inference_on_dataset(model, loader, evaluator)
    return float(results["bbox"][metric])


def format_table(table, severities, summary, metric):
    head = "| corruption | " + " | ".join(str(s) for s in severities) + " | mean |"
    lines = [head, "|" + "---|" * (len(severities) + 2)]
    for c, row in table.items():
        lines.append("| {} | ".format(c) + " | ".join("{:.1f}".format(row[s]) for s in severities)
                     + " | {:.1f} |".format(summary["per_corruption"][c]))
    lines.append("")
    lines.append("clean {m} {c:.1f}; mPC {p:.1f}; rPC {r:.3f} (mPC / clean {m})".format(
        m=metric, c=summary["clean"], p=summary["mPC"], r=summary["rPC"]))
    return "\n".join(lines) + "\n"


def plot(table, severities, summary, metric, title):
    from matplotlib.figure import Figure  # deferred: pictures only

    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot(1, 1, 1)
    for c, row in table.items():
        ax.plot(severities, [row[s] for s in severities], marker="o", label=c)
    ax.axhline(summary["clean"], color="k", linestyle="--", label="clean")
    ax.set_xticks(list(severities))
    ax.set_xlabel("severity")
    ax.set_ylabel(metric)
    ax.set_title("{}: mPC {:.1f}, rPC {:.3f}".format(title, summary["mPC"], summary["rPC"]))
    ax.legend(fontsize=7, ncol=2)
    return fig


def main(argv=None):
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    corruptions = expand_corruptions(args.corruptions)
    severities = sorted(set(args.severities))
    # before any work: a folder that can be written, without an earlier run's results
    check_output_dir(args.output_dir, "--output-dir", RESULTS, args.overwrite)
    cfg = setup_cfg(args.config_file, args.opts, allow_lazy=True)
    weights = weights_of(cfg, args.weights, args.config_file)
    name = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not name:
        raise ConfigError("The config has no test data set; allowed: --dataset NAME")
    dicts, mapper = _base(cfg, name, args.num_images)
    import_imagecorruptions()  # missing: an error before the model is built
    model, _ = build_inspection_model(cfg, weights)

    cells = [(c, s) for c in corruptions for s in severities]
    clean = evaluate(model, dicts, mapper, name, args.metric)
    table = {c: {} for c in corruptions}
    with tqdm(cells, desc="corruptions", unit="cell") as bar:
        for c, s in bar:
            bar.set_postfix_str("{} {}".format(c, s))
            table[c][s] = evaluate(model, dicts, mapper, name, args.metric, c, s,
                                   cfg.INPUT.FORMAT)
    summary = robustness_summary(table, clean)

    report = {"config": args.config_file, "weights": weights, "dataset": name,
              "num_images": len(dicts), "metric": args.metric, "clean": clean,
              "severities": severities,
              "table": {c: {str(s): v for s, v in row.items()} for c, row in table.items()},
              "mPC": summary["mPC"], "rPC": summary["rPC"],
              "per_corruption": summary["per_corruption"]}
    text = format_table(table, severities, summary, args.metric)
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["corruption", "severity", args.metric])
    writer.writerow(["clean", 0, repr(clean)])
    for c, row in table.items():
        for s in severities:
            writer.writerow([c, s, repr(row[s])])
    figure = plot(table, severities, summary, args.metric, name)
    out = os.path.join(args.output_dir, "robustness")  # each atomically, the folder created
    write_json(out + ".json", report)
    write_text(out + ".csv", rows.getvalue())
    write_text(out + ".md", text)
    save_figure(figure, out + ".png", dpi=100, bbox_inches="tight")
    print(text, end="")
    print("Wrote robustness.json, .csv, .md, .png to {}".format(args.output_dir))
    return report


if __name__ == "__main__":
    run_cli(main)
