"""``channels_last`` (NHWC) memory format for the convolutional parts of a detector: the
backbone and the RPN head (``MODEL.CHANNELS_LAST``).

:func:`apply_channels_last` converts the 4-D weights of those modules to ``channels_last``
(``Module.to(memory_format=...)``; later ``.to(device)``, checkpoint loads (``copy_``) and the
optimizer's buffers keep the format) and converts the backbone's input with a forward pre-hook,
so that every convolution runs on NHWC tensors (oneDNN on CPU, cuDNN on GPU). The outputs are
the same function of the inputs; only the summation order inside the convolutions differs
(float tolerance). RoI pooling and the fc layers take the features as they come (torchvision's
pooling makes them contiguous).
"""
from typing import Iterable, Iterator, List, Tuple

import torch
from torch import nn

__all__ = ["CHANNELS_LAST_MODULES", "apply_channels_last", "is_channels_last"]

# the modules of a detectron2 GeneralizedRCNN converted by apply_channels_last
CHANNELS_LAST_MODULES = ("backbone", "proposal_generator.rpn_head")


def _to_channels_last(module, inputs):
    if inputs and torch.is_tensor(inputs[0]) and inputs[0].dim() == 4:
        return (inputs[0].contiguous(memory_format=torch.channels_last),) + tuple(inputs[1:])
    return None


def submodules_at(model: nn.Module, paths: Iterable[str]) -> Iterator[Tuple[str, nn.Module]]:
    """``(path, module)`` for each dotted path of ``paths`` that ``model`` has; missing ones are
    skipped (a model without, e.g., an RPN head)."""
    for path in paths:
        try:
            yield path, model.get_submodule(path)
        except AttributeError:
            continue


def apply_channels_last(model: nn.Module, paths: Iterable[str] = CHANNELS_LAST_MODULES,
                        input_module: str = "backbone") -> List[str]:
    """Convert the modules at ``paths`` (dotted names; missing ones are skipped) of ``model`` to
    ``channels_last`` and make ``input_module`` convert its input. Idempotent.

    Returns:
        list[str]: the paths converted.
    """
    done = []
    for path, module in submodules_at(model, paths):
        module.to(memory_format=torch.channels_last)
        done.append(path)
        if path == input_module and not getattr(module, "_frcnn_channels_last_hook", None):
            module._frcnn_channels_last_hook = module.register_forward_pre_hook(
                _to_channels_last)
    return done


def is_channels_last(module: nn.Module) -> bool:
    """True if every 4-D parameter of ``module`` is in ``channels_last`` format (and it has
    one)."""
    weights = [p for p in module.parameters() if p.dim() == 4]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in weights)
