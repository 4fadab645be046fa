"""Truncated SVD of fully connected layers (Fast R-CNN, Girshick 2015, section 3.1).

A ``Linear`` ``y = W x + b`` with ``W`` (out x in) is replaced by two ``Linear`` layers: ``v``
(in -> k, no bias, weight ``V_k^T``) and then ``us`` (k -> out, weight ``U_k S_k``, bias ``b``),
where ``W = U S V^T`` is the SVD of ``W`` (:func:`torch.linalg.svd`) truncated to its ``k``
largest singular values. The multiply-adds go from ``out * in`` to ``k * (in + out)``: VGG16's
fc6 (4096 x 25088) at k = 1024 keeps 0.29 of them, fc7 (4096 x 4096) at k = 256 keeps 0.125 (the
paper's ranks).

The factors are computed when a checkpoint is loaded: :class:`SVDLinear` accepts, under its own
name, a full ``weight``/``bias`` (a trained, uncompressed checkpoint: factorized at load time,
with the reconstruction error logged) or factors of any rank (a checkpoint written by
``tools/compress_fc.py``; re-factorized when the rank differs). The error of the rank-k weight
is exact and closed-form: ``||W - W_k||_F = sqrt(sum of the discarded s_i^2)``.
"""
import logging
import math
import time
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = [
    "SVDLinear",
    "truncated_svd",
    "svd_error",
    "compress_fc_state_dict",
    "full_weight_from_state_dict",
    "adapt_fc_state_dict",
]

logger = logging.getLogger(__name__)


def svd_error(singular_values: torch.Tensor, rank: int) -> Dict[str, float]:
    """Frobenius error of the rank-``rank`` truncation, from the singular values: absolute
    (``sqrt(sum_{i >= rank} s_i^2)``), relative to ``||W||_F``, and the kept energy."""
    s2 = singular_values.double() ** 2
    total = float(s2.sum())
    dropped = float(s2[rank:].sum())
    return {
        "frobenius_error": math.sqrt(dropped),
        "relative_error": math.sqrt(dropped / total) if total > 0 else 0.0,
        "kept_energy": 1.0 - dropped / total if total > 0 else 1.0,
    }


@torch.no_grad()
def truncated_svd(weight: torch.Tensor, rank: int) -> Tuple[torch.Tensor, torch.Tensor, dict]:
    """``(v_weight, us_weight, error)``: ``V_k^T`` (k x in) and ``U_k S_k`` (out x k) of the
    rank-``rank`` truncated SVD of ``weight`` (out x in), and :func:`svd_error`'s figures (plus
    the rank and the parameter counts)."""
    out_features, in_features = weight.shape
    if not 1 <= rank <= min(out_features, in_features):
        raise ValueError("rank {} for a {} x {} weight; allowed: 1 ... {}".format(
            rank, out_features, in_features, min(out_features, in_features)))
    start = time.perf_counter()
    w = weight.detach()
    if w.dtype not in (torch.float32, torch.float64):  # e.g. half: SVD in float32
        w = w.float()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    us = (u[:, :rank] * s[:rank]).to(weight.dtype).contiguous()
    v = vh[:rank].to(weight.dtype).contiguous()
    error = svd_error(s, rank)
    error.update(rank=rank, full_rank=min(out_features, in_features),
                 parameters=out_features * in_features,
                 compressed_parameters=rank * (out_features + in_features),
                 seconds=time.perf_counter() - start)
    return v, us, error


def _describe(name: str, error: dict) -> str:
    return ("{}: truncated SVD rank {} of {}, weights {:.2f}M -> {:.2f}M ({:.2f}x), relative "
            "Frobenius error {:.4f} (absolute {:.4g}), kept energy {:.2%}, SVD {:.1f} s".format(
                name or "linear", error["rank"], error["full_rank"], error["parameters"] / 1e6,
                error["compressed_parameters"] / 1e6,
                error["compressed_parameters"] / error["parameters"], error["relative_error"],
                error["frobenius_error"], error["kept_energy"], error["seconds"]))


class SVDLinear(nn.Module):
    """``nn.Linear(in_features, out_features)`` as the product of two thinner layers of rank
    ``rank`` (see the module doc): ``forward(x) = us(v(x))``.

    Loading a state dict (``load_state_dict``, detectron2's checkpointers) accepts the full
    ``weight``/``bias`` of an ``nn.Linear`` under the same prefix, or ``v.weight``/``us.*`` of
    another rank; both are factorized to this module's rank, and the error is logged and kept
    in :attr:`last_error`.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, name: str = ""):
        super().__init__()
        if not 1 <= rank <= min(in_features, out_features):
            raise ValueError("rank {} for a {} -> {} layer; allowed: 1 ... {}".format(
                rank, in_features, out_features, min(in_features, out_features)))
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.name = name
        self.v = nn.Linear(in_features, rank, bias=False)
        self.us = nn.Linear(rank, out_features)
        self.last_error: Optional[dict] = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, name: str = "") -> "SVDLinear":
        """The rank-``rank`` factorization of ``linear`` (its weight's truncated SVD)."""
        m = cls(linear.in_features, linear.out_features, rank, name=name)
        m.set_weight(linear.weight, linear.bias)
        return m.to(linear.weight.device)

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> dict:
        """Factorize ``weight`` (out x in) into this module's layers; returns the error."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise CheckpointError("{}: weight of shape {}, expected {}".format(
                self.name or "SVDLinear", tuple(weight.shape),
                (self.out_features, self.in_features)))
        v, us, error = truncated_svd(weight, self.rank)
        self.v.weight.copy_(v)
        self.us.weight.copy_(us)
        if bias is not None:
            self.us.bias.copy_(bias)
        else:
            self.us.bias.zero_()
        self.last_error = error
        logger.info(_describe(self.name, error))
        return error

    def full_weight(self) -> torch.Tensor:
        """``U_k S_k V_k^T``, the (out x in) weight this module applies."""
        return (self.us.weight @ self.v.weight).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.us(self.v(x))

    def extra_repr(self) -> str:
        return "in_features={}, out_features={}, rank={}".format(
            self.in_features, self.out_features, self.rank)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # torch loads the children (v, us) from this dict after this call: a full weight, or
        # factors of another rank, are replaced here by factors of this module's rank
        try:
            factors = _factors_for(self, state_dict, prefix, self.name or prefix.rstrip("."))
        except CheckpointError as e:
            error_msgs.append(str(e))
            return
        if factors is not None:
            for key in _LAYER_KEYS:
                state_dict.pop(prefix + key, None)
            state_dict.update(factors)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


_LAYER_KEYS = ("weight", "bias", "v.weight", "us.weight", "us.bias")


def _factors_for(module: "SVDLinear", state_dict, prefix: str, name: str):
    """The state-dict entries ``prefix + v.weight / us.weight / us.bias`` of ``module``'s rank
    computed from what ``state_dict`` holds under ``prefix`` (a full weight or factors of
    another rank); None when it holds factors of the right shapes already, or nothing."""
    v_key = prefix + "v.weight"
    if v_key in state_dict and tuple(state_dict[v_key].shape) == tuple(module.v.weight.shape):
        return None
    weight = full_weight_from_state_dict(state_dict, prefix)
    if weight is None:
        return None
    if tuple(weight.shape) != (module.out_features, module.in_features):
        raise CheckpointError(
            "{}: the checkpoint's weight is {} x {}, the model's layer {} x {}; it was trained "
            "with other MODEL.* settings (e.g. MODEL.ROI_BOX_HEAD.FC_DIM)".format(
                name, weight.shape[0], weight.shape[1], module.out_features, module.in_features))
    bias = state_dict.get(prefix + "bias", state_dict.get(prefix + "us.bias"))
    bias = None if bias is None else torch.as_tensor(bias)
    v, us, error = truncated_svd(weight.to(module.v.weight.device), module.rank)
    module.last_error = error
    logger.info(_describe(name, error))
    if bias is None:
        bias = torch.zeros(module.out_features, dtype=us.dtype)
    return {v_key: v, prefix + "us.weight": us, prefix + "us.bias": bias}


def adapt_fc_state_dict(model: nn.Module, state_dict) -> Dict[str, dict]:
    """Make ``state_dict`` (in place) fit ``model``'s fully connected layers: for each
    :class:`SVDLinear` of the model, a full weight or factors of another rank become factors of
    its rank (truncated SVD); for each ``nn.Linear`` whose weight is missing but whose factors
    are there (a compressed checkpoint loaded with the SVD off), their product. Run before
    detectron2's checkpointer compares shapes, which would drop factors of another rank.

    Returns:
        dict: the error figures of each layer factorized here, by module name.
    """
    errors = {}
    for name, module in model.named_modules():
        prefix = name + "." if name else ""
        if isinstance(module, SVDLinear):
            factors = _factors_for(module, state_dict, prefix, name)
            if factors is not None:
                for key in _LAYER_KEYS:
                    state_dict.pop(prefix + key, None)
                state_dict.update(factors)
                errors[name] = module.last_error
        elif isinstance(module, nn.Linear) and prefix + "weight" not in state_dict:
            weight = full_weight_from_state_dict(state_dict, prefix)
            if weight is not None:
                bias = state_dict.get(prefix + "us.bias")
                for key in _LAYER_KEYS:
                    state_dict.pop(prefix + key, None)
                state_dict[prefix + "weight"] = weight.to(module.weight.dtype)
                if bias is not None:
                    state_dict[prefix + "bias"] = bias
                logger.info("%s: the checkpoint's SVD factors multiplied back into one weight "
                            "(MODEL.ROI_BOX_HEAD.FC_SVD_RANKS is off for this layer)", name)
    return errors


def full_weight_from_state_dict(state_dict, prefix: str) -> Optional[torch.Tensor]:
    """The (out x in) weight stored under ``prefix``: ``weight`` itself, or the product
    ``us.weight @ v.weight`` of factors; None if neither is there."""
    if prefix + "weight" in state_dict:
        return torch.as_tensor(state_dict[prefix + "weight"])
    if prefix + "v.weight" in state_dict and prefix + "us.weight" in state_dict:
        us = torch.as_tensor(state_dict[prefix + "us.weight"])
        return (us.float() @ torch.as_tensor(state_dict[prefix + "v.weight"]).float()).to(
            us.dtype)
    return None


def compress_fc_state_dict(state_dict, ranks: Dict[str, int]) -> Tuple[OrderedDict, dict]:
    """Factorize layers of a state dict: ``ranks`` maps a layer prefix (e.g.
    ``"roi_heads.box_head.fc6"``) to a rank (0 keeps the layer as it is: full weight, or the
    product of its factors). The layer may hold a full weight or factors of any rank.

    Returns:
        (OrderedDict, dict): the new state dict (other keys unchanged, in order) and the error
        figures (:func:`truncated_svd`) per layer.

    Raises:
        CheckpointError: a layer is missing, or a rank is out of range for it.
    """
    out, errors = OrderedDict(state_dict), {}
    for prefix, rank in ranks.items():
        dotted = prefix + "."
        weight = full_weight_from_state_dict(state_dict, dotted)
        if weight is None:
            raise CheckpointError(
                "The checkpoint has no {0}.weight (nor {0}.v.weight and {0}.us.weight); layers "
                "with a weight: {1}".format(prefix, sorted(
                    k[:-len(".weight")] for k, v in state_dict.items()
                    if k.endswith(".weight") and getattr(v, "dim", lambda: 0)() == 2)[:8]))
        bias = state_dict.get(dotted + "bias", state_dict.get(dotted + "us.bias"))
        for key in ("weight", "bias", "v.weight", "us.weight", "us.bias"):
            out.pop(dotted + key, None)
        if rank == 0:
            out[dotted + "weight"] = weight.clone()
            if bias is not None:
                out[dotted + "bias"] = bias.clone()
            continue
        limit = min(weight.shape)
        if not 1 <= rank <= limit:
            raise CheckpointError(
                "rank {} for {} ({} x {}); allowed: 0 (off) or 1 ... {}".format(
                    rank, prefix, weight.shape[0], weight.shape[1], limit))
        v, us, error = truncated_svd(weight, rank)
        out[dotted + "v.weight"] = v
        out[dotted + "us.weight"] = us
        out[dotted + "us.bias"] = (bias.clone() if bias is not None
                                   else torch.zeros(weight.shape[0], dtype=weight.dtype))
        errors[prefix] = error
        logger.info(_describe(prefix, error))
    return out, errors
