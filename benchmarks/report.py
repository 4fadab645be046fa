"""The benchmark's report: the Markdown tables ``tools/benchmark.py`` prints, from the
JSON-ready results of :func:`~.suite.run_benchmark` (:func:`format_report`; the scaling task's
tables: :func:`format_scaling`)."""
import math
import os
from typing import Dict, List, Sequence

from .scaling import SWEEP_LABELS, SWEEPS

__all__ = ["BREAKDOWN_ROWS", "markdown_table", "format_report", "format_scaling"]


def _fmt(v, spec="{:.3f}"):
    return "-" if v is None else spec.format(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header] + list(rows)) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in rows]


BREAKDOWN_ROWS = (
    ("preprocess", "preprocess (normalize, pad, batch)"),
    ("backbone", "backbone (conv)"),
    ("rpn_head", "RPN head (conv)"),
    ("rpn_other", "RPN other: anchors, matching, sampling, loss, proposals"),
    ("box_pool", "RoI pooling"),
    ("box_head", "box head (fc6/fc7)"),
    ("box_predictor", "box predictor (fc)"),
    ("roi_other", "ROI heads other: matching, sampling, loss / post-processing"),
    ("model_other", "model other: inputs, glue, rescaling"),
    ("backward", "backward"),
    ("optimizer", "optimizer + LR scheduler step"),
    ("total", "total"),
)


def format_report(results: Dict[str, object]) -> str:
    """The tables printed on stdout (markdown)."""
    task, models, ratios = results["task"], results["models"], results["ratios"]
    s, m = results["settings"], results["machine"]
    lines = [
        "## {} | {} {}".format(task, os.path.basename(results["config_file"]),
                               " ".join(results["overrides"])).rstrip(),
        "device {} ({}{}), {} threads, torch {}, load avg before {} after {}".format(
            s["device"], m["cpu_model"], ", " + m["gpu"] if m.get("gpu") else "", s["threads"],
            m["torch"], _fmt_load(m["load_avg_before"]), _fmt_load(m["load_avg_after"])),
    ]
    if m.get("allocator_env"):
        lines.append("allocator settings: " + " ".join(
            "{}={}".format(k, v) for k, v in m["allocator_env"].items()))
    inp = s["input"]
    if task == "accuracy":
        lines.append("train {} for {} iterations x {} images, test {}".format(
            inp["train"], inp["max_iter"], inp["images_per_iter"], inp["test"]))
    elif task == "variants":
        lines.append("weights: {}{}; AP on {}; latency on {} image(s) ({}); warm-up {}, {} rounds "
                     "x {} images; SVD ranks {}".format(
                         inp["weights"], " ({} iterations, {:.0f} s)".format(
                             inp["training"]["iters"], inp["training"]["train_time_s"])
                         if inp.get("training") else "", inp["dataset"],
                         inp["distinct_images"], ", ".join(inp["input_sizes_hw"][:4]),
                         s["warmup"], s["repeats"], s["iters"], inp["svd_ranks"]))
    elif task == "scaling":
        lines.append("input: {}, {} image(s) per point, batch 1; base size {}x{}; warm-up {}, "
                     "{} rounds x {} iterations".format(
                         inp["source"], inp["distinct_images"], *inp["base_image_hw"],
                         s["warmup"], s["repeats"], s["iters"]))
    elif task == "data":
        lines.append("input: {} ({} images); warm-up {} batches, {} rounds x {} batches".format(
            inp["source"], inp["dataset_images"], s["warmup"], s["repeats"], s["iters"]))
    else:
        lines.append("input: {}; sizes {}; {} image(s) per iteration; warm-up {}, {} rounds x "
                     "{} iterations{}".format(
                         inp["source"], ", ".join(inp.get("input_sizes_hw", [])[:6]),
                         inp.get("images_per_iter", "-"), s["warmup"], s["repeats"], s["iters"],
                         ", AMP" if s["amp"] else ""))
    lines.append("")
    kinds = list(models)
    if task == "train":
        header = ["model", "it/s (median)", "s/iter median", "s/iter p90", "peak MB",
                  "plugin/peer s/iter", "paired by round", "plugin/peer it/s", "plugin/peer peak"]
        rows = []
        for k in kinds:
            r, q = models[k], ratios.get(k, {})
            rows.append([k, _fmt(r["iters_per_s"]["median"]), _fmt(r["step_time_s"]["median"]),
                         _fmt(r["step_time_s"]["p90"]), _fmt(r["memory"]["peak_mb"], "{:.0f}"),
                         _fmt(q.get("step_time_median"), "{:.2f}"),
                         _fmt(q.get("paired_rounds_median"), "{:.2f}"),
                         _fmt(q.get("iters_per_s_median"), "{:.2f}"),
                         _fmt(q.get("peak_memory"), "{:.2f}")])
        lines += markdown_table(header, rows)
    elif task == "inference":
        header = ["model", "latency median s", "latency p90 s", "detections/img", "peak MB",
                  "plugin/peer median", "paired by round", "plugin/peer p90", "plugin/peer peak"]
        rows = []
        for k in kinds:
            r, q = models[k], ratios.get(k, {})
            rows.append([k, _fmt(r["latency_s"]["median"]), _fmt(r["latency_s"]["p90"]),
                         _fmt(r["detections_per_image"], "{:.1f}"),
                         _fmt(r["memory"]["peak_mb"], "{:.0f}"),
                         _fmt(q.get("latency_median"), "{:.2f}"),
                         _fmt(q.get("paired_rounds_median"), "{:.2f}"),
                         _fmt(q.get("latency_p90"), "{:.2f}"),
                         _fmt(q.get("peak_memory"), "{:.2f}")])
        lines += markdown_table(header, rows)
    elif task == "variants":
        header = ["model variant", "AP", "AP50", "AP - fp32", "AP50 - fp32", "latency median ms",
                  "p90 ms", "/ plugin fp32", "paired", "/ torchvision fp32", "paired",
                  "peak MB"]
        rows = []
        for k in kinds:
            r, q, b = models[k], ratios.get(k, {}), models[k].get("bbox", {})
            rows.append([k, _fmt(b.get("AP"), "{:.2f}"), _fmt(b.get("AP50"), "{:.2f}"),
                         _fmt(q.get("AP_minus_fp32"), "{:+.2f}"),
                         _fmt(q.get("AP50_minus_fp32"), "{:+.2f}"),
                         _fmt(r["latency_s"]["median"] * 1e3, "{:.1f}"),
                         _fmt(r["latency_s"]["p90"] * 1e3, "{:.1f}"),
                         _fmt(q.get("latency_vs_fp32"), "{:.2f}"),
                         _fmt(q.get("paired_vs_fp32"), "{:.2f}"),
                         _fmt(q.get("latency_vs_torchvision_fp32"), "{:.2f}"),
                         _fmt(q.get("paired_vs_torchvision_fp32"), "{:.2f}"),
                         _fmt(r["memory"]["peak_mb"], "{:.0f}")])
        lines += markdown_table(header, rows)
    elif task == "scaling":
        lines += format_scaling(results["points"], ratios)[1:]
        if results.get("plot"):
            lines += ["", "plot: {}".format(results["plot"])]
    elif task == "data":
        r = models["plugin"]
        lines += markdown_table(
            ["loader", "images/s (median)", "s/batch median", "s/batch p90", "images/batch",
             "workers", "peak MB (main)"],
            [["build_detection_train_loader + DatasetMapper",
              _fmt(r["images_per_s"]["median"], "{:.1f}"), _fmt(r["batch_time_s"]["median"]),
              _fmt(r["batch_time_s"]["p90"]), r["images_per_batch"], r["num_workers"],
              _fmt(r["memory"]["peak_mb"], "{:.0f}")]])
    else:
        header = ["model", "AP", "AP50", "AP75", "train s", "plugin/peer AP", "plugin/peer AP50"]
        rows = []
        for k in kinds:
            b, q = models[k]["bbox"], ratios.get(k, {})
            rows.append([k, _fmt(b.get("AP"), "{:.2f}"), _fmt(b.get("AP50"), "{:.2f}"),
                         _fmt(b.get("AP75"), "{:.2f}"), _fmt(models[k]["train_time_s"], "{:.0f}"),
                         _fmt(q.get("AP"), "{:.2f}"), _fmt(q.get("AP50"), "{:.2f}")])
        lines += markdown_table(header, rows)
    if task in ("train", "inference", "variants"):
        lines += ["", "Breakdown, mean ms per {} (stage timers on the modules):".format(
            "training iteration" if task == "train" else "image")]
        rows = []
        for key, label in BREAKDOWN_ROWS:
            vals = [models[k]["breakdown"]["mean_s"].get(key) for k in kinds]
            if key == "total" and task == "inference":
                vals = [models[k]["breakdown"]["mean_s"].get("forward") for k in kinds]
            if all(v is None for v in vals):
                continue
            rows.append([label] + [_fmt(None if v is None else v * 1e3, "{:.1f}") for v in vals])
        rows.append(["outside the network (share of total)"] + [
            _fmt(models[k]["breakdown"]["mean_s"]["outside_fraction"], "{:.1%}") for k in kinds])
        # memory the allocator gave back to the system and took again (zeroed by the kernel on
        # first touch): a cost of the process, not of the model, that differs run to run
        faults = [models[k]["memory"].get("minor_page_faults_per_iter") for k in kinds]
        if any(f is not None for f in faults):
            rows.append(["minor page faults per {} (median of rounds)".format(
                "iteration" if task == "train" else "image")] + [
                _fmt(f, "{:.0f}") for f in faults])
        lines += markdown_table(["stage"] + kinds, rows)
    if results["targets"]:
        lines.append("")
        for name, t in results["targets"].items():
            lines.append("target {}: {} <= {} -> {}{}".format(
                name, _fmt(t["value"], "{:.3f}"), t["target"], "met" if t["met"] else "NOT met",
                " ({})".format(t["variant"]) if "variant" in t else ""))
    if results.get("config_changes"):
        lines.append("")
        lines.append("config changes for the benchmark: " + "; ".join(
            "{}: {} -> {}".format(k, *v) for k, v in results["config_changes"].items()))
    return "\n".join(lines)


def _fmt_load(v):
    return "-" if not v else "/".join("{:.2f}".format(x) for x in v)


def _f(v, spec):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else spec.format(v)


def format_scaling(points: List[dict], ratios: Dict[str, Dict[str, dict]]) -> List[str]:
    """One Markdown table per sweep."""
    lines = []
    for sweep in SWEEPS:
        pts = [p for p in points if p["sweep"] == sweep]
        if not pts:
            continue
        unit = "s/iteration" if pts[0]["task"] == "train" else "s/image"
        lines += ["", "{} ({}; growth = / the first row's):".format(SWEEP_LABELS[sweep], unit)]
        header = [sweep, "input", "model", "proposals/img", "time", "network", "outside",
                  "outside share",
                  "peak MB", "time growth", "network growth", "outside growth",
                  "plugin/peer time", "plugin/peer peak"]
        rows = []
        for p in pts:
            for kind, m in p["models"].items():
                g = m["growth"]
                q = ratios.get("{}={}".format(sweep, p["value"]), {}).get(kind, {})
                rows.append([p["value"], " ".join(p["input_hw"]), kind,
                             _f(m.get("proposals_per_image"), "{:.0f}"), _f(m["time_s"], "{:.3f}"),
                             _f(m["network_s"], "{:.3f}"), _f(m["outside_s"], "{:.3f}"),
                             _f(m["outside_fraction"], "{:.1%}"), _f(m["peak_mb"], "{:.0f}"),
                             _f(g["time_s"], "{:.2f}x"), _f(g["network_s"], "{:.2f}x"),
                             _f(g["outside_s"], "{:.2f}x"), _f(q.get("time"), "{:.2f}"),
                             _f(q.get("peak_memory"), "{:.2f}")])
        lines += markdown_table(header, rows)
    return lines
