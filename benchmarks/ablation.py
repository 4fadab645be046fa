"""Which design differences cost accuracy: the plugin against torchvision's ``FasterRCNN`` at
equal budget, one switch at a time, over several seeds.

Every run is :func:`~benchmarks.accuracy.train_and_evaluate`: the plugin's
``Trainer`` (``tools/train_net.py``'s) with ``SEED`` = the run's seed, in its own output folder
``<output_dir>/runs/<row>_<seed>``, the same data, order, schedule, optimizer and evaluator for
every model, on ``DATASETS.TRAIN`` -> ``DATASETS.TEST[0]``. The rows:

- ``plugin``: the config as it is;
- ``plugin + <switch>``: the config with one of :data:`SWITCHES` applied (a switch whose keys
  already have its values in the config is skipped: it is the baseline);
- ``torchvision (own init)``: torchvision's model with its own default initialization;
- ``torchvision (copied init)``: torchvision's model starting from the plugin's initial weights;
- ``<row> + <test switch>``: the trained weights of ``plugin`` and of each torchvision row
  evaluated again with a test-time switch of :data:`TEST_SWITCHES` (no retraining).

Results are kept per run in ``ablation.json`` (written atomically after every run), so an
interrupted ablation resumes where it stopped; :func:`summarize` gives mean ± sample standard
deviation over the seeds.
"""
import json
import logging
import math
import os
import shutil
from typing import Dict, List, Sequence

from frcnn_plugin.config import with_keys
from frcnn_plugin.errors import ConfigError
from frcnn_plugin.files import atomic_write

from .accuracy import train_and_evaluate
from .peers import load_pretrained_parts

__all__ = ["SWITCHES", "TEST_SWITCHES", "PEER_ROWS", "plan_runs", "run_ablation", "summarize",
           "format_table"]

logger = logging.getLogger(__name__)

# name -> (what it changes, config overrides). The differences between the plugin's design and
# torchvision's FasterRCNN (and the paper's options) that may cost accuracy.
SWITCHES = {
    "vgg_init_torchvision": (
        "VGG convolutions initialized as torchvision's (Kaiming-normal, fan-out)",
        {"MODEL.VGG.INIT": "torchvision"},
    ),
    "rpn_sigmoid_head": (
        "sigmoid RPN head (detectron2's StandardRPNHead, as torchvision's RPNHead)",
        {"MODEL.RPN.HEAD_NAME": "StandardRPNHead"},
    ),
    "rpn_loss_detectron2": (
        "RPN loss terms / (256 x images) (detectron2's; torchvision's is the same mean)",
        {"MODEL.RPN.LOSS_NORMALIZATION": "detectron2"},
    ),
    "rpn_smooth_l1_torchvision": (
        "RPN box loss smooth L1 with beta 1/9 (torchvision's and py-faster-rcnn's sigma 3) "
        "instead of the paper's beta 1",
        {"MODEL.RPN.SMOOTH_L1_BETA": 1.0 / 9},
    ),
    "roi_smooth_l1": (
        "ROI box loss smooth L1 with beta 1/9 (torchvision's) instead of the config's "
        "(the paper's beta 1)",
        {"MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": 1.0 / 9},
    ),
    "predictor_init_torchvision": (
        "box predictor initialized as torchvision's (nn.Linear's default) instead of the "
        "paper's normal std 0.01 / 0.001",
        {"MODEL.ROI_BOX_HEAD.PREDICTOR_INIT": "pytorch"},
    ),
    "predictor_init_paper": (
        "box predictor initialized as the paper's (normal std 0.01 / 0.001) instead of "
        "nn.Linear's default (for a config that starts from torchvision's choice)",
        {"MODEL.ROI_BOX_HEAD.PREDICTOR_INIT": "paper"},
    ),
    "no_weight_decay_on_norm": (
        "no weight decay on norm layers",
        {"SOLVER.WEIGHT_DECAY_NORM": 0.0},
    ),
    "rpn_min_size_paper": (
        "proposals with a side < 16 original pixels dropped (the paper)",
        {
            "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": 16,
            "MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS": True,
        },
    ),
    "roialign": (
        "RoIAlign (ROIAlignV2) instead of RoIPool",
        {"MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2"},
    ),
    "roipool_paper": (
        "RoIPool (the paper's) instead of the config's RoIAlign",
        {"MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIPool"},
    ),
    "keep_cross_boundary_anchors": (
        "cross-boundary anchors labelled in training (BOUNDARY_THRESH -1)",
        {"MODEL.RPN.BOUNDARY_THRESH": -1},
    ),
    # not a design difference: the same function in another memory format (float rounding
    # only), to see what a layout change does to a trained model's AP
    "channels_last": (
        "backbone and RPN head trained and evaluated in the channels_last memory format",
        {"MODEL.CHANNELS_LAST": True},
    ),
    # not a design difference either: bf16 mixed precision (issue 26), trained and evaluated
    # (forced, not "auto": the same arithmetic on any CPU; slow where bf16 is emulated)
    "bf16": (
        "bf16 mixed precision in training and evaluation (SOLVER.AMP / TEST.AMP bf16), "
        "channels_last",
        {"SOLVER.AMP.ENABLED": True, "SOLVER.AMP.PRECISION": "bf16", "TEST.AMP.ENABLED": True,
         "TEST.AMP.PRECISION": "bf16", "MODEL.CHANNELS_LAST": True},
    ),
}

# Test-time switches: name -> (what it changes, config overrides). They need no retraining:
# the trained weights of the plugin row and of each peer row are also evaluated with them,
# giving the rows "<row> + <name>".
TEST_SWITCHES = {
    "test_nms_0.5": (
        "test-time NMS IoU threshold 0.5 (torchvision's and detectron2's default) instead of "
        "the paper's 0.3",
        {"MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5},
    ),
}

# the torchvision rows: name -> (model kind, init)
PEER_ROWS = {
    "torchvision (own init)": ("torchvision", "own"),
    "torchvision (copied init)": ("torchvision", "copied"),
}


def _get(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def applies(cfg, overrides: Dict[str, object]) -> bool:
    """Whether ``overrides`` change ``cfg`` (a switch already in the config is the baseline)."""
    return any(_get(cfg, k) != v for k, v in overrides.items())


def plan_runs(cfg, switches: Sequence[str], peers: Sequence[str], seeds: Sequence[int],
              plugin: bool = True):
    """The runs, as dicts with ``row``, ``kind``, ``init``, ``overrides`` and ``seed``.
    ``plugin=False`` leaves out the ``plugin`` row (the config as it is), e.g. to train only
    the peers under settings the plugin was already measured with as a switch."""
    rows = [("plugin", "plugin", "copied", {})] if plugin else []
    for name in switches:
        if name not in SWITCHES:
            raise ValueError("switch {!r}; allowed: {}".format(name, ", ".join(SWITCHES)))
        overrides = SWITCHES[name][1]
        if applies(cfg, overrides):
            rows.append(("plugin + " + name, "plugin", "copied", overrides))
        else:
            logger.warning("switch %s: the config already has %s; skipped", name, overrides)
    for name in peers:
        if name not in PEER_ROWS:
            raise ValueError("peer {!r}; allowed: {}".format(name, ", ".join(PEER_ROWS)))
        rows.append((name,) + PEER_ROWS[name] + ({},))
    return [
        {"row": row, "kind": kind, "init": init, "overrides": overrides, "seed": seed,
         # the test-time switches for the plugin as configured and the peers
         "test_switches": [t for t in TEST_SWITCHES if applies(cfg, TEST_SWITCHES[t][1])]
         if not overrides else []}
        for row, kind, init, overrides in rows
        for seed in seeds
    ]


def _test_key(run, name: str) -> str:
    return "{} + {}|{}".format(run["row"], name, run["seed"])


def _run_key(run) -> str:
    return "{}|{}".format(run["row"], run["seed"])


def run_ablation(cfg, switches: Sequence[str], peers: Sequence[str], seeds: Sequence[int],
                 output_dir: str, pretrained: str = None,
                 plugin: bool = True) -> Dict[str, dict]:
    """Train and evaluate every planned run not yet in ``output_dir/ablation.json``, each in
    its own output folder ``output_dir/runs/<run>`` (checkpoints, ``metrics.json``; an
    unfinished run's folder is emptied and the run starts again).

    ``pretrained``: a checkpoint whose backbone and fc6/fc7 every model starts from (ImageNet
    style, :func:`~benchmarks.peers.load_pretrained_parts`); an output folder holds
    runs of one such start only. ``plugin``: as in :func:`plan_runs`.

    Returns:
        dict: run key ("<row>|<seed>") -> {"row", "seed", "kind", "init", "overrides", "bbox",
        "train_time_s", ...}, for every run in the file.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "ablation.json")
    done = {}
    if os.path.isfile(path):
        with open(path) as f:
            done = json.load(f)
    others = sorted({str(r.get("pretrained")) for r in done.values()} - {str(pretrained)})
    if others:
        raise ConfigError(
            "{} holds runs started from pretrained={}, this call has pretrained={}; allowed: "
            "the same --pretrained, or another --out-dir".format(path, others[0], pretrained))
    parts = load_pretrained_parts(pretrained) if pretrained else None
    for run in plan_runs(cfg, switches, peers, seeds, plugin=plugin):
        run["pretrained"] = pretrained
        key = _run_key(run)
        tests = {_test_key(run, t): t for t in run["test_switches"]}
        if key in done and all(k in done for k in tests):
            continue
        run_cfg = with_keys(cfg, run["overrides"])
        logger.warning("ablation run %s", key)
        run_dir = os.path.join(output_dir, "runs", "".join(c if c.isalnum() else "_" for c in key))
        if os.path.isdir(run_dir):  # an unfinished run (metrics.json would be appended to)
            logger.warning("ablation run %s: starting again in %s", key, run_dir)
            shutil.rmtree(run_dir)
        result = train_and_evaluate(
            run_cfg, run["kind"], seed=run["seed"], init=run["init"], output_dir=run_dir,
            test_variants={t: TEST_SWITCHES[t][1] for t in run["test_switches"]},
            pretrained=parts,
        )
        by_test = result.pop("test_variants", {})
        done[key] = dict(run, **result)
        for test_key, name in tests.items():
            done[test_key] = dict(run, **dict(
                result, row="{} + {}".format(run["row"], name), bbox=by_test[name],
                overrides=dict(run["overrides"], **TEST_SWITCHES[name][1]),
                test_switches=[]))
        text = json.dumps(done, indent=2, default=str)
        atomic_write(path, lambda f: f.write(text), mode="w")
    return done


def _mean_std(values: List[float]):
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def summarize(results: Dict[str, dict], metrics=("AP", "AP50", "AP75")) -> List[dict]:
    """Per row (in the order of first appearance): number of seeds, mean and std of each metric
    and of the training time."""
    rows: Dict[str, List[dict]] = {}
    for r in results.values():
        rows.setdefault(r["row"], []).append(r)
    out = []
    for row, runs in rows.items():
        entry = {"row": row, "seeds": sorted(r["seed"] for r in runs)}
        for m in metrics:
            vals = [float(r["bbox"].get(m, float("nan"))) for r in runs]
            entry[m] = _mean_std(vals)
        entry["train_time_s"] = _mean_std([float(r["train_time_s"]) for r in runs])
        out.append(entry)
    return out


def format_table(summary: List[dict], metrics=("AP", "AP50", "AP75")) -> str:
    """Markdown: row | seeds | metric mean ± std ... | Δ AP50 vs plugin | train time."""
    base = next((e for e in summary if e["row"] == "plugin"), None)
    head = ["run", "seeds"] + list(metrics) + ["Δ AP50", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        cells = [e["row"], str(len(e["seeds"]))]
        cells += ["{:.1f} ± {:.1f}".format(*e[m]) for m in metrics]
        # no baseline in the folder (--skip-plugin): no difference to give
        cells.append("{:+.1f}".format(e["AP50"][0] - base["AP50"][0])
                     if base is not None and e is not base else "–")
        cells.append("{:.0f} ± {:.0f}".format(*e["train_time_s"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
