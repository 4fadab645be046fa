#!/usr/bin/env python
"""Analyse a detector's COCO-format results against a registered data set.

    python tools/analyze_results.py --dataset frcnn_shapes_val --out-dir output/analysis \
        --results output/shapes_demo/inference/coco_instances_results.json \
        [--iou 0.5] [--score-thresh 0.5]

Writes into OUT_DIR: per_class_ap.csv (AP, AP50, AP75, APs, APm, APl per class and "all",
also printed as a table), pr_curves.png (precision-recall per class and overall at IoU 0.5 and
0.75), confusion_matrix.png / .csv (GT class + background rows, predicted class + background
columns, at --iou and --score-thresh), error_breakdown.png (overall) and
error_breakdown/<class>.png (the COCO error analysis: C75, C50, Loc, Sim, Oth, BG, FN). The
results come from ``tools/train_net.py --eval-only`` (COCOEvaluator's
coco_instances_results.json), ``tools/predict.py --dataset NAME`` (predictions.json, with the
data set's image ids) or any detector. Results of an earlier run in OUT_DIR are replaced only
with --overwrite. A user's
mistake ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
"""
import argparse
import csv
import io
import logging
import os

from frcnn_plugin.analysis import (
    confusion_matrix, error_breakdown, load_ground_truth, load_results, per_class_ap, pr_curves,
    run_cocoeval,
)
from frcnn_plugin.analysis.plots import plot_confusion, plot_error_breakdown, plot_pr_curves
from frcnn_plugin.cli import add_debug_flag, float_in_range, run_cli
from frcnn_plugin.outputs import check_output_dir, write_text

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# what this tool writes into --out-dir
RESULTS = ("per_class_ap.csv", "pr_curves.png", "confusion_matrix.csv", "confusion_matrix.png",
           "error_breakdown.png", "error_breakdown/*.png")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True, help="COCO results JSON")
    parser.add_argument("--dataset", required=True, metavar="NAME", help="a registered data set")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--iou", type=float_in_range(0, 1, lo_open=True), default=0.5,
                        help="confusion matrix IoU (0.5)")
    parser.add_argument("--score-thresh", type=float_in_range(0, 1), default=0.5,
                        help="confusion matrix: detections scoring at least this (0.5)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --out-dir")
    add_debug_flag(parser)
    return parser


def format_ap_table(rows):
    head = "| class | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for r in rows:
        lines.append("| {} | ".format(r["class"]) + " | ".join(
            "{:.1f}".format(r[m]) for m in METRICS) + " |")
    return "\n".join(lines)


def _write_csv(path, header, rows):
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, text.getvalue())  # atomically


def main(argv=None):
    args = argument_parser().parse_args(argv)
    check_output_dir(args.out_dir, "--out-dir", RESULTS, args.overwrite)  # before any work
    logging.basicConfig(level=logging.WARNING)
    gt = load_ground_truth(args.dataset, args.out_dir)
    results = load_results(args.results, gt)
    os.makedirs(args.out_dir, exist_ok=True)
    ev = run_cocoeval(gt, results)
    rows = per_class_ap(gt, ev)
    print("{} detections on {} images of {}:".format(len(results), len(gt.getImgIds()),
                                                     args.dataset))
    print(format_ap_table(rows))
    out = {}
    out["per_class_ap"] = os.path.join(args.out_dir, "per_class_ap.csv")
    _write_csv(out["per_class_ap"], ("class",) + METRICS,
               [[r["class"]] + ["{:.4f}".format(r[m]) for m in METRICS] for r in rows])
    out["pr_curves"] = plot_pr_curves({iou: pr_curves(gt, ev, iou) for iou in (0.5, 0.75)},
                                      os.path.join(args.out_dir, "pr_curves.png"))
    matrix, names = confusion_matrix(gt, results, args.iou, args.score_thresh)
    out["confusion_csv"] = os.path.join(args.out_dir, "confusion_matrix.csv")
    _write_csv(out["confusion_csv"], ["gt \\ predicted"] + names,
               [[n] + [int(v) for v in row] for n, row in zip(names, matrix)])
    out["confusion_png"] = plot_confusion(matrix, names, os.path.join(
        args.out_dir, "confusion_matrix.png"), args.iou, args.score_thresh)
    breakdown = error_breakdown(gt, results)
    folder = os.path.join(args.out_dir, "error_breakdown")
    os.makedirs(folder, exist_ok=True)
    for name, ps in breakdown.items():
        target = os.path.join(args.out_dir, "error_breakdown.png") if name == "all" else \
            os.path.join(folder, "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
                         + ".png")
        plot_error_breakdown(ps, "{}: {}".format(args.dataset, name if name != "all"
                                                 else "all classes"), target)
    out["error_breakdown"] = os.path.join(args.out_dir, "error_breakdown.png")
    print("Wrote " + ", ".join(sorted(os.path.relpath(p, args.out_dir) for p in out.values()))
          + ", error_breakdown/<class>.png to " + args.out_dir)
    return {"rows": rows, "confusion": (matrix, names), "breakdown": breakdown, "files": out}


if __name__ == "__main__":
    run_cli(main)
