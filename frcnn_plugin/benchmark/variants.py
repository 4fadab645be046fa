"""Inference variants side by side (issue 13): the same trained weights run as fp32,
channels-last, truncated-SVD fc6/fc7, int8 fc layers, bf16 autocast (and combinations), ONNX
Runtime (``onnx``: the fp32 model exported as ``tools/export_model.py`` does; ``onnx_int8``: that
file with int8 convolutions and fc layers, as ``--int8-calibration`` writes it; both in the
default list when onnx and onnxruntime are installed) and any backend registered with
:func:`register_variant`, each with its AP / AP50 on the held-out images and its latency, as
ratios to the plugin's fp32 and to torchvision's fp32.

A variant name is ``fp32`` or tricks joined by ``+``, in any order: ``channels_last``, ``svd``
(ranks from ``svd_ranks``), ``int8`` (fc6/fc7), ``bf16``; or a registered backend name. The
torchvision peer runs the same tricks where it can (all of them: its backbone is the plugin's VGG
module and its fc6/fc7 the plugin's ``VGGFCHead``); registered backends are the plugin's only.
"""
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    "TRICKS",
    "DEFAULT_VARIANTS",
    "VARIANT_BUILDERS",
    "register_variant",
    "parse_variant",
    "variant_config",
    "build_variant",
    "evaluate_variant",
    "run_variants",
    "variant_ratios",
]

logger = logging.getLogger(__name__)

TRICKS = ("channels_last", "svd", "int8", "bf16")
DEFAULT_VARIANTS = ("fp32", "channels_last", "svd", "int8", "svd+int8",
                    "channels_last+svd+int8", "bf16")
# name -> builder(cfg, weights_path, example) -> (model with detectron2's interface: list of
# dicts in, [{"instances": ...}] out, and a ``device`` attribute; info dict); ``example`` is one
# mapped input dict (to trace an export on). The hook for other backends (ONNX Runtime).
VARIANT_BUILDERS: Dict[str, Callable] = {}


def register_variant(name: str, builder: Callable):
    """Make ``name`` a variant of the plugin built by ``builder(cfg, weights_path, example)``;
    e.g. the ONNX Runtime backend: ``register_variant("onnx", build_onnx_runtime_model)``."""
    if name in TRICKS or name == "fp32" or "+" in name:
        raise ValueError("variant name {!r} is taken by the built-in tricks".format(name))
    VARIANT_BUILDERS[name] = builder


def _onnx_runtime_variant(cfg, weights: Optional[str], example: dict):
    """The ``onnx`` variant: the plugin's fp32 model with ``weights``, traced on ``example`` and
    exported as ``tools/export_model.py --format onnx`` does, run by ONNX Runtime (CPU)."""
    from ..export import exported_model

    model, _ = build_variant(cfg, "plugin", "fp32", weights)
    return exported_model(cfg, model, example, "onnx"), {"backend": "onnxruntime"}


# training images the onnx_int8 variant calibrates on
INT8_CALIBRATION_IMAGES = 8


def _onnx_runtime_int8_variant(cfg, weights: Optional[str], example: dict):
    """The ``onnx_int8`` variant: the ``onnx`` variant's file with its convolutions and fc
    layers quantized to int8 by ONNX Runtime (static, calibrated on the first
    :data:`INT8_CALIBRATION_IMAGES` images of ``DATASETS.TRAIN[0]``), as
    ``tools/export_model.py --int8-calibration`` writes it. Untrained weights (``--synthetic``:
    latency only, no AP) are calibrated on ``example``, the timed image."""
    from ..export import calibration_inputs, exported_model

    model, _ = build_variant(cfg, "plugin", "fp32", weights)
    if weights:
        calibration = calibration_inputs(cfg, INT8_CALIBRATION_IMAGES)
        source = cfg.DATASETS.TRAIN[0]
    else:
        calibration, source = [example], "the timed image (untrained weights: latency only)"
    return exported_model(cfg, model, example, "onnx", int8_calibration=calibration), {
        "backend": "onnxruntime int8", "calibration_images": len(calibration),
        "calibration_source": source}


register_variant("onnx", _onnx_runtime_variant)
register_variant("onnx_int8", _onnx_runtime_int8_variant)


def onnx_runtime_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def parse_variant(name: str) -> Tuple[str, ...]:
    """The tricks of a variant name, sorted (``()`` for fp32); a registered backend's name is
    returned as a 1-tuple ``(name,)``.

    Raises:
        ValueError: an unknown trick or backend.
    """
    if name in VARIANT_BUILDERS:
        return (name,)
    if name == "fp32":
        return ()
    tricks = name.split("+")
    bad = [t for t in tricks if t not in TRICKS]
    if bad or len(set(tricks)) != len(tricks):
        backends = ", ".join(VARIANT_BUILDERS) or "none"
        raise ValueError("variant {!r}; allowed: fp32, tricks joined by '+' ({}), or a "
                         "registered backend ({})".format(name, ", ".join(TRICKS), backends))
    return tuple(t for t in TRICKS if t in tricks)


def svd_ranks_for(cfg, ranks: Sequence[int]) -> List[int]:
    """``ranks`` clipped to the fc layers' sizes (the demo's fc7 is 512 -> 512)."""
    fc_dim = cfg.MODEL.ROI_BOX_HEAD.FC_DIM
    return [min(int(r), fc_dim) for r in ranks]


def variant_config(cfg, tricks: Sequence[str], svd_ranks: Sequence[int] = (1024, 256)):
    """A frozen copy of ``cfg`` with the keys of the plugin's tricks set."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.CHANNELS_LAST = "channels_last" in tricks
    cfg.MODEL.ROI_BOX_HEAD.FC_SVD_RANKS = (svd_ranks_for(cfg, svd_ranks) if "svd" in tricks
                                           else [0, 0])
    cfg.MODEL.ROI_BOX_HEAD.FC_INT8 = "int8" in tricks
    cfg.MODEL.BF16_AUTOCAST = "bf16" in tricks
    cfg.freeze()
    return cfg


def _torchvision_tricks(peer, tricks, svd_ranks, factorize: bool = True):
    """The tricks on the torchvision peer (after its weights are loaded); ``factorize`` False:
    SVD layers of the right shapes with their own random initialization."""
    from ..modeling.fc_svd import SVDLinear
    from ..modeling.memory_format import apply_channels_last
    from ..modeling.quantize import apply_bf16_autocast, quantize_fc_int8

    tv = peer.model
    if "channels_last" in tricks:
        apply_channels_last(tv, paths=("backbone", "rpn.head"), input_module="backbone")
    if "svd" in tricks:
        head = tv.roi_heads.box_head
        for name, rank in zip(("fc6", "fc7"), svd_ranks):
            fc = getattr(head, name)
            if rank and factorize:
                setattr(head, name, SVDLinear.from_linear(fc, rank, name=name))
            elif rank:
                setattr(head, name, SVDLinear(fc.in_features, fc.out_features, rank, name=name)
                        .to(fc.weight.device))
    if "int8" in tricks:
        quantize_fc_int8(peer, paths=("model.roi_heads.box_head",))
    if "bf16" in tricks:
        apply_bf16_autocast(peer, paths=("model.backbone", "model.rpn.head",
                                         "model.roi_heads.box_head",
                                         "model.roi_heads.box_predictor"))


def config_tricks(cfg) -> Tuple[str, ...]:
    """The tricks a config's keys turn on (``MODEL.CHANNELS_LAST``, ``FC_SVD_RANKS``,
    ``FC_INT8``, ``MODEL.BF16_AUTOCAST``)."""
    box = cfg.MODEL.ROI_BOX_HEAD
    on = {"channels_last": cfg.MODEL.get("CHANNELS_LAST", False),
          "svd": any(box.get("FC_SVD_RANKS", (0, 0))), "int8": box.get("FC_INT8", False),
          "bf16": cfg.MODEL.get("BF16_AUTOCAST", False)}
    return tuple(t for t in TRICKS if on[t])


def apply_config_tricks(cfg, kind: str, model: nn.Module, inference: bool) -> List[str]:
    """Give a peer of the train / inference tasks the tricks of the plugin's config, so that
    the ratios compare like with like: channels-last (every kind, training too; the plugin has
    it from its meta-architecture), and for inference int8 and bf16 (the plugin and the d2 peer
    through :func:`~frcnn_plugin.modeling.quantize.prepare_for_inference`, torchvision on its
    own modules). The SVD is structural: the d2 peer is built with the ranks (same box head);
    torchvision's fc6/fc7 are factorized here. Returns the tricks applied."""
    from ..modeling.memory_format import apply_channels_last
    from ..modeling.quantize import prepare_for_inference

    tricks = config_tricks(cfg)
    if not tricks:
        return []
    if kind == "torchvision":
        ranks = list(cfg.MODEL.ROI_BOX_HEAD.FC_SVD_RANKS)
        if inference:
            model.eval()
        _torchvision_tricks(model, tricks if inference else
                            tuple(t for t in tricks if t in ("channels_last", "svd")), ranks)
    else:
        if kind != "plugin" and "channels_last" in tricks:
            apply_channels_last(model)
        if inference:
            prepare_for_inference(cfg, model.eval())
    return list(tricks) if inference else [t for t in tricks if t in ("channels_last", "svd")]


def build_variant(cfg, kind: str, variant: str, weights: Optional[str],
                  svd_ranks: Sequence[int] = (1024, 256),
                  example: Optional[dict] = None) -> Tuple[nn.Module, dict]:
    """Build ``kind`` ("plugin" or "torchvision") as ``variant`` with the trained ``weights``
    (a checkpoint file: the plugin's through its checkpointer, so that SVD ranks are applied at
    load; torchvision's a ``{"model": state_dict}``), in eval mode. ``weights`` None: the
    seeded random initialization, SVD factors included (latency only: the SVD of an untrained
    VGG16 fc6 costs minutes on a busy CPU and changes no timing).

    Returns:
        (model, info)
    """
    from detectron2.modeling import build_model

    from ..engine.checkpoint import AtomicCheckpointer
    from ..modeling.quantize import prepare_for_inference
    from .peers import build_torchvision_peer

    tricks = parse_variant(variant)
    info = {"kind": kind, "variant": variant,
            "weights": os.path.basename(weights) if weights else "untrained (seeded)"}
    if tricks and tricks[0] in VARIANT_BUILDERS:
        if kind != "plugin":
            raise ValueError("backend {!r} is the plugin's only".format(variant))
        model, more = VARIANT_BUILDERS[tricks[0]](cfg, weights, example)
        info.update(more or {})
        return model, info
    ranks = svd_ranks_for(cfg, svd_ranks)
    if kind == "plugin":
        vcfg = variant_config(cfg, tricks, ranks)
        torch.manual_seed(0)
        model = build_model(vcfg)
        if weights:
            AtomicCheckpointer(model).load(weights)
        model = prepare_for_inference(vcfg, model.eval())
    elif kind == "torchvision":
        torch.manual_seed(0)
        model = build_torchvision_peer(cfg).to(torch.device(cfg.MODEL.DEVICE))
        if weights:
            state = torch.load(weights, map_location=cfg.MODEL.DEVICE, weights_only=True)
            model.load_state_dict(state["model"])
        model.eval()
        _torchvision_tricks(model, tricks, ranks, factorize=bool(weights))
    else:
        raise ValueError("model kind {!r}; allowed: plugin, torchvision".format(kind))
    info["class"] = "{}.{}".format(type(model).__module__, type(model).__name__)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    if "svd" in tricks:
        info["svd_ranks"] = ranks
    return model, info


def evaluate_variant(cfg, model, output_dir: str) -> Dict[str, float]:
    """COCO AP of ``model`` on ``DATASETS.TEST[0]``: the plugin's trainer's test path
    (:func:`~frcnn_plugin.benchmark.accuracy.evaluate_bbox`)."""
    from .accuracy import evaluate_bbox

    with torch.no_grad():
        return evaluate_bbox(cfg, model, output_dir)


def _train_plugin(cfg, path: str, seed: int, log, output_dir: str = None) -> dict:
    """Train the plugin as the accuracy task does (the plugin's trainer) and save its weights
    to ``path``."""
    from .accuracy import train_and_evaluate

    log("[benchmark] variants: training the plugin for {} iterations".format(
        cfg.SOLVER.MAX_ITER))
    result = train_and_evaluate(cfg, "plugin", seed=seed, output_dir=output_dir, save_to=path,
                                evaluate=False)
    return {"train_time_s": result["train_time_s"], "iters": result["iters"]}


def _torchvision_weights(cfg, plugin_weights: str, path: str):
    """The trained plugin's weights in the torchvision peer's layout
    (:func:`~frcnn_plugin.benchmark.peers.init_torchvision_from_detectron2`: backbone, RPN with
    the softmax pair turned into one logit, fc6/fc7, predictor), saved to ``path``."""
    from detectron2.modeling import build_model

    from ..engine.checkpoint import AtomicCheckpointer
    from .peers import build_torchvision_peer, init_torchvision_from_detectron2

    plugin = build_model(cfg)
    AtomicCheckpointer(plugin).load(plugin_weights)
    peer = build_torchvision_peer(cfg).to(plugin.device)
    init_torchvision_from_detectron2(peer, plugin)  # every layer corresponds (tested)
    torch.save({"model": peer.state_dict()}, path)


def variant_ratios(models: Dict[str, dict]) -> Dict[str, dict]:
    """Per label: latency / the plugin's fp32 and / torchvision's fp32 (medians and paired by
    round), and AP / AP50 differences to the plugin's fp32 (points)."""
    import statistics

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
    from .inputs import dataset_dicts, map_inputs
    from .measure import run_interleaved

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
        from .inputs import register_synthetic_coco

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
