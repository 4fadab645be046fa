"""Inference variants side by side (issue 13): the same trained weights run as each variant
of :mod:`.tricks` (fp32, channels-last, truncated-SVD fc6/fc7, int8 fc layers, bf16 autocast
and combinations; ONNX Runtime's ``onnx`` and ``onnx_int8``, in the default list when onnx and
onnxruntime are installed; registered backends), each with its AP / AP50 on the held-out images
and its latency, as ratios to the plugin's fp32 and to torchvision's fp32.
"""
import logging
import os
import statistics
from typing import Dict

import torch

from detectron2.modeling import build_model

from frcnn_plugin.engine.checkpoint import AtomicCheckpointer

from .accuracy import evaluate_bbox, train_and_evaluate
from .inputs import dataset_dicts, map_inputs, register_synthetic_coco
from .measure import run_interleaved
from .peers import build_torchvision_peer, init_torchvision_from_detectron2
from .tricks import (
    VARIANT_BUILDERS,
    build_variant,
    onnx_runtime_available,
    parse_variant,
    svd_ranks_for,
)

__all__ = [
    "DEFAULT_VARIANTS",
    "evaluate_variant",
    "run_variants",
    "variant_ratios",
    "variant_target",
]

logger = logging.getLogger(__name__)

DEFAULT_VARIANTS = ("fp32", "channels_last", "svd", "int8", "svd+int8",
                    "channels_last+svd+int8", "bf16", "channels_last+bf16")


def evaluate_variant(cfg, model, output_dir: str) -> Dict[str, float]:
    """COCO AP of ``model`` on ``DATASETS.TEST[0]``: the plugin's trainer's test path
    (:func:`~benchmarks.accuracy.evaluate_bbox`)."""
    with torch.no_grad():
        return evaluate_bbox(cfg, model, output_dir)


def _train_plugin(cfg, path: str, seed: int, log, output_dir: str = None) -> dict:
    """Train the plugin as the accuracy task does (the plugin's trainer) and save its weights
    to ``path``."""
    log("[benchmark] variants: training the plugin for {} iterations".format(
        cfg.SOLVER.MAX_ITER))
    result = train_and_evaluate(cfg, "plugin", seed=seed, output_dir=output_dir, save_to=path,
                                evaluate=False)
    return {"train_time_s": result["train_time_s"], "iters": result["iters"]}


def _torchvision_weights(cfg, plugin_weights: str, path: str):
    """The trained plugin's weights in the torchvision peer's layout
    (:func:`~benchmarks.peers.init_torchvision_from_detectron2`: backbone, RPN with
    the softmax pair turned into one logit, fc6/fc7, predictor), saved to ``path``."""
    plugin = build_model(cfg)
    AtomicCheckpointer(plugin).load(plugin_weights)
    peer = build_torchvision_peer(cfg).to(plugin.device)
    init_torchvision_from_detectron2(peer, plugin)  # every layer corresponds (tested)
    torch.save({"model": peer.state_dict()}, path)


def variant_ratios(models: Dict[str, dict]) -> Dict[str, dict]:
    """Per label: latency / the plugin's fp32 and / torchvision's fp32 (medians and paired by
    round), and AP / AP50 differences to the plugin's fp32 (points)."""
    def ratio(a, b):
        return None if a is None or not b else a / b

    out = {}
    refs = {"fp32": models.get("plugin fp32"), "torchvision_fp32": models.get("torchvision fp32")}
    for label, m in models.items():
        r = {}
        for name, ref in refs.items():
            if ref is None:
                continue
            r["latency_vs_" + name] = ratio(m["latency_s"]["median"], ref["latency_s"]["median"])
            r["paired_vs_" + name] = statistics.median(
                a / b for a, b in zip(m["per_round_median_s"], ref["per_round_median_s"]))
        base = refs["fp32"]
        if base is not None and m.get("bbox") and base.get("bbox"):
            for k in ("AP", "AP50"):
                a, b = m["bbox"].get(k), base["bbox"].get(k)
                r[k + "_minus_fp32"] = None if a is None or b is None else a - b
        out[label] = r
    return out


INFERENCE_TARGET = 0.5  # plugin variant latency / torchvision fp32, with AP50 within 1 point
AP50_TOLERANCE = 1.0


def variant_target(models, ratios) -> dict:
    """The issue's inference target: the fastest plugin variant whose AP50 is within 1 point of
    the plugin's fp32, against torchvision's fp32 (reported, never asserted)."""
    best = None
    for label, r in ratios.items():
        if not label.startswith("plugin ") or r.get("latency_vs_torchvision_fp32") is None:
            continue
        if r.get("AP50_minus_fp32") is None or r["AP50_minus_fp32"] < -AP50_TOLERANCE:
            continue
        if best is None or r["latency_vs_torchvision_fp32"] < best[1]:
            best = (label, r["latency_vs_torchvision_fp32"])
    if best is None:
        return {}
    return {"inference_variant_vs_torchvision": {
        "value": best[1], "target": INFERENCE_TARGET, "met": best[1] <= INFERENCE_TARGET,
        "variant": best[0], "ap50_tolerance": AP50_TOLERANCE}}


def run_variants(cfg, options, tmpdir: str, log=print):
    """The variants task (see the module doc); returns (models by label, input description)."""
    variants = list(options.variants or DEFAULT_VARIANTS)
    if not options.variants and onnx_runtime_available():
        variants += ["onnx", "onnx_int8"]  # ONNX Runtime (frcnn_plugin[export]) when installed
    for v in variants:
        parse_variant(v)
    if "fp32" not in variants:
        variants.insert(0, "fp32")
    training = None
    weights = options.weights
    if not weights and not options.synthetic:  # (synthetic: latency only, untrained weights)
        weights = os.path.join(tmpdir, "plugin_trained.pth")
        training = _train_plugin(cfg, weights, options.seed, log,
                                 output_dir=os.path.join(tmpdir, "train"))
    kinds = ["plugin"] + [p for p in options.peers if p == "torchvision"]
    paths = {"plugin": weights}
    if "torchvision" in kinds and not weights:
        paths["torchvision"] = None
    elif "torchvision" in kinds:
        paths["torchvision"] = os.path.join(tmpdir, "torchvision_from_plugin.pth")
        _torchvision_weights(cfg, weights, paths["torchvision"])
    if options.synthetic:  # generated images for the latency; no AP (no matching labels)
        test = register_synthetic_coco("frcnn_benchmark_synthetic_coco",
                                       os.path.join(tmpdir, "synthetic_coco"),
                                       options.num_images, seed=options.seed,
                                       image_size=options.image_size)
    else:
        test = cfg.DATASETS.TEST[0]
    dicts = dataset_dicts(cfg, test, is_train=False)
    images = map_inputs(cfg, dicts, min(options.num_images, len(dicts)), False,
                        seed=options.seed)
    # registered backends run the plugin only
    runs = [(kind, v) for kind in kinds for v in variants
            if kind == "plugin" or v not in VARIANT_BUILDERS]
    accuracy = {label: {} for label in ("{} {}".format(k, v) for k, v in runs)}
    for kind, v in ([] if options.synthetic else runs):
        label = "{} {}".format(kind, v)
        model, _ = build_variant(cfg, kind, v, paths[kind], options.svd_ranks, images[0])
        accuracy[label] = evaluate_variant(cfg, model, os.path.join(tmpdir, "eval",
                                                                    label.replace(" ", "_")))
        ap = accuracy[label]
        log("[benchmark] {}: AP {:.2f} AP50 {:.2f}".format(
            label, ap.get("AP", float("nan")), ap.get("AP50", float("nan"))))
        del model
    specs = [dict(cfg=cfg, kind=kind, label="{} {}".format(kind, v), variant=v,
                  weights=paths[kind], svd_ranks=list(options.svd_ranks), task="inference",
                  images=images, warmup=options.warmup, threads=torch.get_num_threads(),
                  seed=options.seed, amp=False) for kind, v in runs]
    models = run_interleaved(specs, iters=options.iters, repeats=options.repeats,
                             isolate=options.isolate, log=log)
    for label, m in models.items():
        m["bbox"] = accuracy[label]
    sizes = [tuple(x["image"].shape[-2:]) for x in images]
    inputs = {"source": "synthetic coco" if options.synthetic else "dataset " + test,
              "dataset": "none (--synthetic: latency only)" if options.synthetic else test,
              "dataset_images": len(dicts),
              "images_per_iter": 1, "distinct_images": len(images),
              "input_sizes_hw": sorted({"{}x{}".format(*s) for s in sizes}),
              "weights": options.weights or ("untrained" if options.synthetic
                                             else "trained here"), "training": training,
              "svd_ranks": svd_ranks_for(cfg, options.svd_ranks),
              "torchvision_weights": "the plugin's trained weights, converted"}
    return models, inputs
