"""What a detector costs: FLOPs (in total, per operator and per component), parameters and
activations, with detectron2's and fvcore's counters (``tools/analyze_model.py``).

* FLOPs: :class:`detectron2.utils.analysis.FlopCountAnalysis` (fvcore's counter through
  detectron2's ``TracingAdapter``; one FLOP is one multiply-add, fvcore's convention), with a
  handle for torchvision's ``roi_align`` added (fvcore has none): 4 multiply-adds (one bilinear
  sample) per sampling point, ``sampling_ratio``² points per output bin, and 1 point where the
  ratio is adaptive (0; the real number depends on each RoI's size, so this is a lower bound).
  RoIPool (a max, no multiply-add) counts 0, as detectron2 counts ``max_pool2d``.
* Parameters: fvcore's ``parameter_count`` / ``parameter_count_table``.
* Activations: :func:`detectron2.utils.analysis.activation_count_operators`.

The components of a Faster R-CNN: ``backbone``, ``proposal_generator`` (the RPN), the ROI heads'
``box_pooler`` (RoI pooling), ``box_head`` and ``box_predictor``; other models list their own
top-level modules and ROI-head modules.
"""
import collections
from typing import Dict, List, Sequence

import numpy as np
import torch
from fvcore.nn import flop_count_table, parameter_count, parameter_count_table
from fvcore.nn.jit_handles import get_shape

from detectron2.utils.analysis import FlopCountAnalysis, activation_count_operators

__all__ = [
    "COMPONENT_NAMES",
    "FlopReport",
    "activation_counts",
    "count_flops",
    "parameter_counts",
    "parameter_table",
    "roi_align_flop_jit",
    "synthetic_input",
]

# module path (after the model) -> the name in the component table
COMPONENT_NAMES = collections.OrderedDict([
    ("backbone", "backbone"),
    ("proposal_generator", "RPN"),
    ("roi_heads.box_pooler", "RoI pooling"),
    ("roi_heads.pooler", "RoI pooling"),  # Res5ROIHeads
    ("roi_heads.box_head", "box head"),
    ("roi_heads.res5", "box head (res5)"),
    ("roi_heads.box_predictor", "box predictor"),
])


def roi_align_flop_jit(inputs: List, outputs: List) -> int:
    """fvcore op handle of ``torchvision::roi_align``: output elements × sampling points per
    bin × 4 multiply-adds (see the module docstring)."""
    out = get_shape(outputs[0])
    ratio = inputs[5].toIValue() if len(inputs) > 5 else 0
    points = int(ratio) ** 2 if ratio and int(ratio) > 0 else 1
    return int(np.prod(out)) * points * 4


def synthetic_input(height: int, width: int, seed: int = 0) -> dict:
    """A model input of one random RGB/BGR image of ``height`` × ``width`` (uint8 noise, CHW),
    shown to the model at that size (``height``/``width`` the same: no resize)."""
    rng = np.random.RandomState(seed)
    image = torch.from_numpy(rng.randint(0, 256, (3, height, width), dtype=np.uint8))
    return {"image": image, "height": height, "width": width}


class FlopReport:
    """FLOPs of a model averaged over inputs.

    Attributes:
        total (float): FLOPs per input.
        by_module (dict): module path (``""`` is the model) -> FLOPs per input.
        by_operator (dict): operator -> FLOPs per input.
        proposals (float): proposals per image given to the ROI heads (0 without an RPN).
        table (str): fvcore's ``flop_count_table`` of the first input.
        num_inputs (int)
    """

    def __init__(self, total, by_module, by_operator, proposals, table, num_inputs):
        self.total = total
        self.by_module = by_module
        self.by_operator = by_operator
        self.proposals = proposals
        self.table = table
        self.num_inputs = num_inputs

    def components(self) -> "collections.OrderedDict[str, float]":
        """name -> FLOPs per input of the :data:`COMPONENT_NAMES` the model has (in that
        order), then the other top-level modules with FLOPs, then ``total``."""
        out = collections.OrderedDict()
        for path, name in COMPONENT_NAMES.items():
            if path in self.by_module:
                out[name] = out.get(name, 0.0) + self.by_module[path]
        covered = {p.split(".")[0] for p in COMPONENT_NAMES if p in self.by_module}
        for path, flops in self.by_module.items():
            if path and "." not in path and path not in covered and path != "roi_heads" \
                    and flops:
                out[path] = flops
        if "roi_heads" in self.by_module:
            named = sum(self.by_module.get(p, 0.0) for p in COMPONENT_NAMES
                        if p.startswith("roi_heads."))
            rest = self.by_module["roi_heads"] - named
            if rest > 0:
                out["ROI heads (other)"] = rest
        out["total"] = self.total
        return out

    def per_roi(self, path="roi_heads.box_head") -> float:
        """FLOPs of a module per proposal (the box head runs once per proposal)."""
        return self.by_module.get(path, 0.0) / self.proposals if self.proposals else 0.0


def _strip(name: str) -> str:
    """fvcore's module names are those of detectron2's TracingAdapter: ``model.`` first."""
    if name == "model":
        return ""
    return name[len("model."):] if name.startswith("model.") else name


def _proposal_counter(model, counts):
    pg = getattr(model, "proposal_generator", None)
    if pg is None:
        return None

    def hook(module, args, output):
        proposals = output[0] if isinstance(output, tuple) else output
        counts.extend(len(p) for p in proposals)

    return pg.register_forward_hook(hook)


def count_flops(model: torch.nn.Module, inputs: Sequence[dict]) -> FlopReport:
    """FLOPs of ``model`` (in eval mode) on each input (one image each), averaged."""
    model.eval()
    totals, modules, operators, counts = [], collections.Counter(), collections.Counter(), []
    table = ""
    handle = _proposal_counter(model, counts)
    try:
        for i, inp in enumerate(inputs):
            flops = FlopCountAnalysis(model, [inp])
            flops.set_op_handle("torchvision::roi_align", roi_align_flop_jit)
            flops.unsupported_ops_warnings(False)
            flops.uncalled_modules_warnings(False)
            flops.tracer_warnings("none")
            totals.append(flops.total())
            modules.update({_strip(k): v for k, v in flops.by_module().items()})
            operators.update(flops.by_operator())
            if i == 0:
                table = flop_count_table(flops, max_depth=3)
    finally:
        if handle is not None:
            handle.remove()
    n = max(len(totals), 1)
    return FlopReport(
        total=sum(totals) / n,
        by_module={k: v / n for k, v in modules.items()},
        by_operator={k: v / n for k, v in sorted(operators.items(), key=lambda kv: -kv[1])},
        proposals=sum(counts) / len(counts) if counts else 0.0,
        table=table, num_inputs=len(totals),
    )


def parameter_counts(model: torch.nn.Module) -> Dict[str, int]:
    """Module path (``""``: the model) -> parameters: fvcore's ``parameter_count``."""
    return dict(parameter_count(model))


def parameter_table(model: torch.nn.Module, max_depth: int = 3) -> str:
    """fvcore's ``parameter_count_table``."""
    return parameter_count_table(model, max_depth=max_depth)


def activation_counts(model: torch.nn.Module, inputs: Sequence[dict]) -> Dict[str, float]:
    """Activations (output elements, in millions) per operator, averaged over the inputs:
    detectron2's ``activation_count_operators``."""
    model.eval()
    total = collections.Counter()
    for inp in inputs:
        total.update(activation_count_operators(model, [inp]))
    n = max(len(inputs), 1)
    return {k: v / n for k, v in sorted(total.items(), key=lambda kv: -kv[1])}
