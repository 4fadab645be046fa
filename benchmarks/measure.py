"""Timing of models: training iterations, inference latency, data-loader throughput.

Each model runs in its own fresh (spawned) worker process, so that its peak RSS is its own and
no model inherits another's allocator state. A worker builds its model and runs the warm-up
iterations (not timed); then :func:`run_interleaved` asks the workers in turn for rounds of
``iters`` timed iterations, one model at a time, rotating the order each round; at the end each
worker reports its summary and peak memory.

The per-stage breakdown times detectron2's and torchvision's modules with forward hooks
(backbone, RPN head, RoI pooling, box head, box predictor; the RPN and ROI heads as a whole) and
attributes the rest of the forward pass (anchors, matching, sampling, losses, proposal
selection, input handling, post-processing) to "outside the network".
"""
import itertools
import logging
import multiprocessing
import time
import traceback
from contextlib import nullcontext
from typing import Callable, Dict, List, Optional, Sequence

import torch

from detectron2.data import build_detection_train_loader
from detectron2.data.samplers import TrainingSampler
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.utils.events import EventStorage

from frcnn_plugin.data import FRCNNDatasetMapper
from frcnn_plugin.engine.trainer import build_step_trainer
from frcnn_plugin.export import exported_model

from .peers import TorchvisionFasterRCNN, build_benchmark_model
from .stats import (
    minor_page_faults, peak_memory, read_proc_status_mb, reset_peak_memory, summarize,
)
from .tricks import apply_config_tricks, build_variant

__all__ = [
    "STAGES",
    "StageTimer",
    "Session",
    "train_session",
    "inference_session",
    "data_session",
    "Worker",
    "run_interleaved",
    "breakdown_summary",
]

logger = logging.getLogger(__name__)

# "plugin-onnx": the plugin model run by an export backend (inference only)
EXPORTED_KIND_SEPARATOR = "-"

# stage -> module path, per model family. "rpn" and "roi_heads" are the whole heads; the other
# stages are the network layers inside them.
STAGES = {
    "detectron2": {
        "backbone": "backbone",
        "rpn": "proposal_generator",
        "rpn_head": "proposal_generator.rpn_head",
        "roi_heads": "roi_heads",
        "box_pool": "roi_heads.box_pooler",
        "box_head": "roi_heads.box_head",
        "box_predictor": "roi_heads.box_predictor",
    },
    "torchvision": {
        "preprocess": "model.transform",
        "backbone": "model.backbone",
        "rpn": "model.rpn",
        "rpn_head": "model.rpn.head",
        "roi_heads": "model.roi_heads",
        "box_pool": "model.roi_heads.box_roi_pool",
        "box_head": "model.roi_heads.box_head",
        "box_predictor": "model.roi_heads.box_predictor",
    },
}
NETWORK_STAGES = ("backbone", "rpn_head", "box_pool", "box_head", "box_predictor")


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Wall time spent in named sub-modules (and methods) of a model, per iteration.

    Args:
        model: the model.
        stages (dict[str, str]): stage name -> dotted module path (missing paths are skipped).
        methods (dict[str, str]): stage name -> name of a method of ``model`` to time (it is
            wrapped on the instance).
        device: syncs CUDA around each stage when on a CUDA device.
    """

    def __init__(self, model, stages: Dict[str, str], methods: Optional[Dict[str, str]] = None,
                 device=torch.device("cpu")):
        self.device = device
        self.enabled = False
        self._current: Dict[str, float] = {}
        self._start: Dict[str, List[float]] = {}
        self._handles = []
        for name, path in stages.items():
            module = model
            try:
                for part in path.split("."):
                    module = getattr(module, part)
            except AttributeError:
                continue
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))
        self._patched = []
        for name, method in (methods or {}).items():
            original = getattr(model, method)
            setattr(model, method, self._wrap(name, original))
            self._patched.append((model, method))

    def _begin(self, name):
        if self.enabled:
            _sync(self.device)
            self._start.setdefault(name, []).append(time.perf_counter())

    def _end(self, name):
        if self.enabled and self._start.get(name):
            _sync(self.device)
            dt = time.perf_counter() - self._start[name].pop()
            self._current[name] = self._current.get(name, 0.0) + dt

    def _pre(self, name):
        def hook(module, inputs):
            self._begin(name)

        return hook

    def _post(self, name):
        def hook(module, inputs, outputs):
            self._end(name)

        return hook

    def _wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            self._begin(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self._end(name)

        return wrapped

    def pop(self) -> Dict[str, float]:
        """The stage times (seconds) since the last pop."""
        out, self._current, self._start = self._current, {}, {}
        return out

    def remove(self):
        for h in self._handles:
            h.remove()
        for obj, method in self._patched:
            delattr(obj, method)  # back to the class's method
        self._handles, self._patched = [], []


def _stage_timer(model, family: str, device) -> StageTimer:
    if family == "exported":  # one opaque graph: no stages to time
        return StageTimer(model, {}, device=device)
    # detectron2: preprocess_image (uint8 -> normalized float, padding, batching);
    # torchvision: the adapter's prepare (uint8 -> float in [0, 1], targets) + its transform
    method = "preprocess_image" if family == "detectron2" else "prepare"
    return StageTimer(model, STAGES[family], methods={"preprocess": method}, device=device)


def breakdown_summary(records: Sequence[Dict[str, float]]) -> Dict[str, object]:
    """Mean seconds per iteration of each stage, and the derived groups.

    Records hold the stage times plus "forward", and in training "backward", "optimizer",
    "total". Derived: ``rpn_other`` (RPN minus its head: anchors, matching, sampling, loss,
    proposal selection), ``roi_other`` (ROI heads minus pooling, box head and predictor:
    proposal matching and sampling, losses, box post-processing), ``model_other`` (forward
    minus preprocess, backbone and both heads: input handling, glue, final rescaling),
    ``network`` (the network layers in the forward pass), ``outside_network`` (preprocess +
    rpn_other + roi_other + model_other) and ``outside_fraction`` (of ``total``; the forward
    for inference).
    """
    keys = sorted({k for r in records for k in r})
    mean = {k: sum(r.get(k, 0.0) for r in records) / len(records) for k in keys}
    g = mean.get
    out = dict(mean)
    out["rpn_other"] = g("rpn", 0.0) - g("rpn_head", 0.0)
    out["roi_other"] = g("roi_heads", 0.0) - g("box_pool", 0.0) - g("box_head", 0.0) - g(
        "box_predictor", 0.0)
    out["model_other"] = g("forward", 0.0) - sum(
        g(k, 0.0) for k in ("preprocess", "backbone", "rpn", "roi_heads"))
    out["network"] = sum(g(k, 0.0) for k in NETWORK_STAGES)
    out["outside_network"] = g("preprocess", 0.0) + out["rpn_other"] + out["roi_other"] + out[
        "model_other"]
    total = g("total", g("forward", 0.0))
    out["outside_fraction"] = out["outside_network"] / total if total > 0 else None
    return {"mean_s": out, "iterations": len(records)}


def _family(model) -> str:
    if getattr(model, "is_exported", False):  # frcnn_plugin.export.ExportedModel
        return "exported"
    return "torchvision" if isinstance(model, TorchvisionFasterRCNN) else "detectron2"


def _to_device(batch: List[dict], device) -> List[dict]:
    """Inputs moved to the device beforehand, so that no model pays a copy inside the timing."""
    out = []
    for x in batch:
        x = dict(x)
        x["image"] = x["image"].to(device)
        if "instances" in x:
            x["instances"] = x["instances"].to(device)
        out.append(x)
    return out


def _forward_fn(model, batch: List[dict]) -> Callable[[], object]:
    """A zero-argument call of the model on the mapped dicts (already on the device). Every
    model starts from the same uint8 images: torchvision's conversion to its inputs (float
    images in [0, 1], target dicts) is timed as its preprocessing, as detectron2's
    normalization is; the conversion of its detections to Instances is not timed."""
    if _family(model) == "torchvision":
        return lambda: model.model(*model.prepare(batch))
    return lambda: model(batch)


def _autocast(device, amp: bool):
    return torch.autocast(device.type, dtype=torch.float16) if amp else nullcontext()


class Session:
    """Warm-up at construction, then timed rounds on demand, then :meth:`finish`.

    Args:
        step: ``step(i, timed) -> dict`` runs iteration ``i`` and returns its record (stage
            times, "total", ...).
        finish_fn: ``finish_fn(rounds, walls, memory, breakdown_records) -> dict``.
        device: the device (peak memory, syncs).
        warmup (int): untimed iterations run now.
        breakdown_pass (bool): collect the stage breakdown in a separate pass at the end
            (CUDA: the stage syncs would perturb the timed rounds).
        timer (StageTimer or None): removed at the end.
    """

    def __init__(self, step, finish_fn, device, warmup: int, breakdown_pass: bool = False,
                 timer: Optional[StageTimer] = None):
        self.step, self.finish_fn, self.device = step, finish_fn, device
        self.breakdown_pass, self.timer = breakdown_pass, timer
        self.rounds, self.walls, self.faults, self.i = [], [], [], 0
        self.reset_ok = reset_peak_memory(device)
        for _ in range(warmup):
            self.step(self.i, False)
            self.i += 1

    def round(self, iters: int) -> float:
        """Run ``iters`` timed iterations; returns their wall time."""
        records = []
        faults = minor_page_faults()
        start = time.perf_counter()
        for _ in range(iters):
            records.append(self.step(self.i, True))
            self.i += 1
        wall = time.perf_counter() - start
        if faults is not None:
            self.faults.append((minor_page_faults() - faults) / max(iters, 1))
        self.rounds.append(records)
        self.walls.append(wall)
        return wall

    def finish(self) -> Dict[str, object]:
        memory = dict(peak_memory(self.device), reset=self.reset_ok)
        # per timed iteration, median over the rounds
        memory["minor_page_faults_per_iter"] = (
            summarize(self.faults)["median"] if self.faults else None)
        records = [r for rs in self.rounds for r in rs]
        breakdown = records
        if self.breakdown_pass:
            self.step.breakdown = True
            breakdown = [self.step(self.i + k, True) for k in range(max(len(self.rounds[0]), 1))]
        if self.timer is not None:
            self.timer.remove()
        return self.finish_fn(self.rounds, self.walls, memory, breakdown)


class _StepMarks:
    """When the phases of one training step begin: the model's forward (forward pre-hook), its
    end (forward hook; it also stops the stage timer, so that nothing after the forward pass is
    attributed to a stage) and the optimizer step (the optimizer's step pre-hook). CUDA is
    synchronized at each mark. :meth:`remove` takes the hooks off."""

    def __init__(self, model, optimizer, device, timer: StageTimer):
        self.device, self.timer, self.marks = device, timer, {}
        self._handles = [
            model.register_forward_pre_hook(lambda m, i: self._mark("forward")),
            model.register_forward_hook(lambda m, i, o: self._mark("backward")),
            optimizer.register_step_pre_hook(lambda o, a, k: self._mark("optimizer")),
        ]

    def _mark(self, phase):
        _sync(self.device)
        self.marks[phase] = time.perf_counter()
        if phase == "backward":
            self.timer.enabled = False

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []


def train_session(model, batches: List[List[dict]], cfg, *, warmup: int,
                  amp: bool = False) -> Session:
    """Training iterations as the plugin's trainer runs them: detectron2's
    ``SimpleTrainer.run_step`` (``AMPTrainer.run_step`` with ``amp``: float16 autocast and
    ``GradScaler``) over ``batches`` (lists of mapped dicts, used in turn), then the LR
    scheduler's step (the ``LRScheduler`` hook's), with detectron2's optimizer and LR schedule
    from the config (``SOLVER.*``) for every model. ``run_step`` writes its losses to an
    ``EventStorage`` and raises ``FloatingPointError`` on a non-finite loss.

    The breakdown: "forward" (the model's forward pass), "backward" (from its end to the
    optimizer step: loss sum, zero_grad, backward, detectron2's metrics; with AMP also the
    gradient unscaling), "optimizer" (the optimizer step and the LR scheduler's; all of the
    step's end when ``GradScaler`` skips the optimizer), "total" (their sum: the step from the
    forward pass on; ``run_step`` takes the batch from memory before it).

    The summary has "iters_per_s" (over rounds), "step_time_s" (over iterations),
    "per_round_iters_per_s", "breakdown", "memory".
    """
    device = model.device
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    loader = itertools.cycle([_to_device(b, device) for b in batches])
    trainer = build_step_trainer(model, loader, optimizer, device=device, amp=amp)
    timer = _stage_timer(model, _family(model), device)
    marks = _StepMarks(model, optimizer, device, timer)

    def step(i, timed):
        marks.marks.clear()
        trainer.iter = i
        with EventStorage(i):
            timer.enabled = timed and step.breakdown
            trainer.run_step()
            scheduler.step()
            _sync(device)
            t3 = time.perf_counter()
            timer.enabled = False
        m = marks.marks
        t0, t1, t2 = m["forward"], m["backward"], m.get("optimizer", t3)
        record = timer.pop()
        record.update(forward=t1 - t0, backward=t2 - t1, optimizer=t3 - t2, total=t3 - t0)
        return record

    def finish(rounds, walls, memory, breakdown):
        marks.remove()
        per_round = [len(rs) / w for rs, w in zip(rounds, walls)]
        return {
            "iters_per_s": summarize(per_round),
            "per_round_iters_per_s": per_round,
            "step_time_s": summarize([r["total"] for rs in rounds for r in rs]),
            "images_per_iter": len(batches[0]),
            "breakdown": breakdown_summary(breakdown),
            "memory": memory,
        }

    step.breakdown = device.type != "cuda"
    return Session(step, finish, device, warmup, breakdown_pass=not step.breakdown, timer=timer)


def inference_session(model, images: List[dict], *, warmup: int, amp: bool = False) -> Session:
    """Inference latency per image (batch of 1) in eval mode under ``torch.no_grad()``.

    The summary has "latency_s" (over all timed images: median, p90, ...),
    "per_round_median_s", "detections_per_image" (mean), "breakdown", "memory".
    """
    device = model.device
    model.eval()
    prepared = [_forward_fn(model, _to_device([x], device)) for x in images]
    timer = _stage_timer(model, _family(model), device)
    detections, proposals = [], []
    # the proposals each image really gets (after NMS there can be fewer than the top-k asked):
    # detectron2's proposal generator returns (list of Instances, losses), torchvision's RPN
    # (list of box tensors, losses)
    rpn = getattr(model, "proposal_generator", None) or getattr(
        getattr(model, "model", None), "rpn", None)
    if isinstance(rpn, torch.nn.Module):
        rpn.register_forward_hook(
            lambda module, inputs, output: proposals.extend(len(p) for p in output[0]))

    def step(i, timed):
        with torch.no_grad():
            timer.enabled = timed and step.breakdown
            t0 = time.perf_counter()
            with _autocast(device, amp):
                out = prepared[i % len(prepared)]()
            _sync(device)
            t1 = time.perf_counter()
            timer.enabled = False
        if timed:
            first = out[0]
            detections.append(len(first["instances"] if "instances" in first else first["boxes"]))
        record = timer.pop()
        record.update(forward=t1 - t0, total=t1 - t0)
        return record

    def finish(rounds, walls, memory, breakdown):
        summary = breakdown_summary(breakdown)
        if _family(model) == "exported":  # only the whole forward is known
            summary["mean_s"] = {k: summary["mean_s"][k] for k in ("forward", "total")}
            summary["mean_s"]["outside_fraction"] = None
        return {
            "latency_s": summarize([r["total"] for rs in rounds for r in rs]),
            "per_round_median_s": [summarize([r["total"] for r in rs])["median"]
                                   for rs in rounds],
            "detections_per_image": sum(detections) / max(len(detections), 1),
            "proposals_per_image": sum(proposals) / len(proposals) if proposals else None,
            "breakdown": summary,
            "memory": memory,
        }

    step.breakdown = device.type != "cuda"
    return Session(step, finish, device, warmup, breakdown_pass=not step.breakdown, timer=timer)


def data_session(cfg, dataset_dicts: List[dict], *, warmup: int, seed: int = 0) -> Session:
    """Throughput of detectron2's ``build_detection_train_loader`` with the config's mapper
    (``FRCNNDatasetMapper(cfg, is_train=True)``), batch size ``SOLVER.IMS_PER_BATCH`` and
    ``DATALOADER.NUM_WORKERS`` workers. Warm-up batches (worker start-up) are not timed.

    The summary has "images_per_s" and "batch_time_s", "memory" (the main process only).
    """
    loader = build_detection_train_loader(
        cfg, mapper=FRCNNDatasetMapper(cfg, True), dataset=list(dataset_dicts),
        sampler=TrainingSampler(len(dataset_dicts), seed=seed),
    )
    it = iter(loader)

    def step(i, timed):
        t0 = time.perf_counter()
        batch = next(it)
        return {"total": time.perf_counter() - t0, "images": len(batch)}

    def finish(rounds, walls, memory, breakdown):
        per_round = [sum(r["images"] for r in rs) / w for rs, w in zip(rounds, walls)]
        records = [r for rs in rounds for r in rs]
        return {
            "images_per_s": summarize(per_round),
            "per_round_images_per_s": per_round,
            "batch_time_s": summarize([r["total"] for r in records]),
            "images_per_batch": records[0]["images"],
            "num_workers": cfg.DATALOADER.NUM_WORKERS,
            "memory": dict(memory, note="main process only"),
        }

    step.breakdown = False
    return Session(step, finish, torch.device("cpu"), warmup)


def _open_session(spec: Dict[str, object]):
    """Build the model (if any) and the task's session; returns (session, model info)."""
    torch.set_num_threads(spec["threads"])
    baseline = read_proc_status_mb("VmRSS")
    cfg, task, warmup = spec["cfg"], spec["task"], spec["warmup"]
    if task == "data":
        return data_session(cfg, spec["dataset_dicts"], warmup=warmup, seed=spec["seed"]), {
            "kind": spec["kind"], "baseline_rss_mb": baseline}
    if spec.get("variant"):  # the variants task: trained weights, inference tricks
        model, info = build_variant(cfg, spec["kind"], spec["variant"], spec["weights"],
                                    spec.get("svd_ranks", (1024, 256)), spec["images"][0])
    else:
        kind, _, backend = spec["kind"].partition(EXPORTED_KIND_SEPARATOR)
        model, info = build_benchmark_model(cfg, kind, seed=spec["seed"])
        if backend:  # the plugin model exported (traced on the first image), run from the file
            model = exported_model(cfg, model, spec["images"][0], backend)
            info.update(kind=spec["kind"], backend=backend)
        else:
            # MODEL.CHANNELS_LAST, FC_SVD_RANKS, FC_INT8, BF16_AUTOCAST for every model alike
            info["tricks"] = apply_config_tricks(cfg, kind, model, task == "inference")
    info["baseline_rss_mb"] = baseline
    if task == "train":
        session = train_session(model, spec["batches"], cfg, warmup=warmup, amp=spec["amp"])
    else:
        session = inference_session(model, spec["images"], warmup=warmup, amp=spec["amp"])
    return session, info


def _finish(session, info) -> Dict[str, object]:
    result = session.finish()
    result["memory"]["baseline_rss_mb"] = info.pop("baseline_rss_mb")
    result["model"] = info
    result["threads"] = torch.get_num_threads()
    return result


def _worker(spec, conn):
    """A worker process: open the session, then serve "round" and "finish" requests."""
    try:
        logging.basicConfig(level=spec.get("log_level", logging.WARNING))
        session, info = _open_session(spec)
        conn.send(("ready", None))
        while True:
            command, arg = conn.recv()
            if command == "round":
                conn.send(("ok", session.round(arg)))
            else:
                conn.send(("ok", _finish(session, info)))
                break
    except BaseException as e:  # report every failure to the parent, then exit
        conn.send(("error", "{}: {}\n{}".format(type(e).__name__, e, traceback.format_exc())))
    finally:
        conn.close()


class Worker:
    """One model's session in a fresh spawned process (``isolate``) or in this process.

    The constructor starts the process; :meth:`wait_ready` returns once the model is built and
    warmed up. :meth:`round` runs timed iterations, :meth:`finish` returns the summary (and
    ends the process).
    """

    def __init__(self, spec: Dict[str, object], isolate: bool = True):
        self.kind, self.isolate, self.spec = spec.get("label", spec["kind"]), isolate, spec
        if not isolate:
            return
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        # not a daemon: the data task's loader starts worker processes of its own
        self.proc = ctx.Process(target=_worker, args=(spec, child))
        self.proc.start()
        child.close()

    def wait_ready(self):
        if self.isolate:
            self._receive()
        else:
            self.session, self.info = _open_session(self.spec)
        self.spec = None  # the inputs are no longer needed here

    def _receive(self):
        try:
            status, payload = self.conn.recv()
        except EOFError:
            self.proc.join()
            raise RuntimeError("the benchmark worker for {!r} died (exit code {}); out of "
                               "memory?".format(self.kind, self.proc.exitcode)) from None
        if status == "error":
            self.proc.join()
            raise RuntimeError("benchmark of {!r} failed in its worker:\n{}".format(
                self.kind, payload))
        return payload

    def round(self, iters: int) -> float:
        if not self.isolate:
            return self.session.round(iters)
        self.conn.send(("round", iters))
        return self._receive()

    def finish(self) -> Dict[str, object]:
        if not self.isolate:
            return _finish(self.session, self.info)
        self.conn.send(("finish", None))
        result = self._receive()
        self.proc.join()
        return result

    def close(self):
        """Stop the worker process if it is still running (after an error elsewhere)."""
        if self.isolate and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()


def run_interleaved(specs: Sequence[Dict[str, object]], *, iters: int, repeats: int,
                    isolate: bool = True, log=None) -> Dict[str, Dict[str, object]]:
    """Measure several models in interleaved rounds.

    Each model gets its own worker (started together, built and warmed up); then round r
    runs ``iters`` timed iterations of every model, one model at a time, in an order rotated
    by r (A B C, B C A, C A B, ...), so that a drift of the machine's load affects every model
    alike. Returns each model's summary, by kind.
    """
    workers = []
    try:
        # all processes start at once (imports and warm-ups overlap; nothing is timed yet)
        workers = [Worker(spec, isolate=isolate) for spec in specs]
        for w in workers:
            w.wait_ready()
            if log:
                log("[benchmark] {} {}: built and warmed up".format(specs[0]["task"], w.kind))
        for r in range(repeats):
            shift = r % len(workers)
            for w in workers[shift:] + workers[:shift]:
                wall = w.round(iters)
                if log:
                    log("[benchmark] round {}/{} {}: {:.2f} s".format(r + 1, repeats, w.kind,
                                                                      wall))
        return {w.kind: w.finish() for w in workers}
    finally:
        for w in workers:
            w.close()
