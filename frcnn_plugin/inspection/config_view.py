"""The merged config as the model and the tools see it (``tools/print_config.py``), with the keys
that differ from detectron2's defaults marked.

* A YAML config: the frozen config of :func:`frcnn_plugin.cli.load_config` (``_BASE_`` chain,
  file, ``KEY VALUE`` overrides, ``DATASETS.REGISTER`` registered), key by key against
  detectron2's ``get_cfg()``: ``*`` a value other than detectron2's default (shown after it),
  ``+`` a key detectron2 does not have (the plugin's own, e.g. ``MODEL.VGG``).
* A Python config: every node with a ``_target_`` against the default of that argument in the
  target's signature (``*``: set to another value, or an argument without default), the
  ``train`` keys against detectron2's model zoo ``common/train.py``; ``+``: keys neither has.
"""
import inspect

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import CfgNode, get_cfg
from detectron2.utils.registry import locate

from ..lazy import model_zoo_config

__all__ = ["MARK_CHANGED", "MARK_NEW", "ConfigLine", "config_lines", "format_config_lines"]

MARK_CHANGED = "*"
MARK_NEW = "+"
_NONE = object()


class ConfigLine:
    """One key: its depth, name, value (None for a node), mark ("", "*", "+") and the default it
    differs from (shown for "*")."""

    def __init__(self, depth, key, value=None, is_node=False, mark="", default=_NONE):
        self.depth, self.key, self.value, self.is_node = depth, key, value, is_node
        self.mark, self.default = mark, default


def _plain(value):
    """Tuples as lists, callables as their dotted name: what YAML can show."""
    if isinstance(value, (list, tuple, ListConfig)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if callable(value) or inspect.isclass(value):
        return "{}.{}".format(getattr(value, "__module__", "?"),
                              getattr(value, "__qualname__", repr(value)))
    return value


def _show(value):
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=10 ** 6).strip()
    return text[:-4] if text.endswith("\n...") else text.replace("\n...", "")


def _yaml_lines(node, defaults, depth, out):
    for key in node.keys():
        value = node[key]
        default = defaults.get(key, _NONE) if isinstance(defaults, CfgNode) else _NONE
        if isinstance(value, CfgNode):
            mark = MARK_NEW if default is _NONE else ""
            out.append(ConfigLine(depth, key, is_node=True, mark=mark))
            _yaml_lines(value, default if isinstance(default, CfgNode) else None, depth + 1,
                        out)
            continue
        if default is _NONE:
            mark = MARK_NEW
        else:
            mark = MARK_CHANGED if _plain(value) != _plain(default) else ""
        out.append(ConfigLine(depth, key, value, mark=mark, default=default))


def _signature_defaults(target):
    """name -> default of the target's arguments (for a class: its ``__init__``; detectron2's
    ``@configurable`` keeps the signature)."""
    if isinstance(target, str):
        try:
            target = locate(target)
        except Exception:  # an unknown target: nothing to compare with
            return {}
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}
    return {n: p.default for n, p in params.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _lazy_lines(node, defaults, depth, out, path=""):
    target_defaults = _signature_defaults(node["_target_"]) if "_target_" in node else None
    for key in node.keys():
        child = node._get_node(key)
        value = child if isinstance(child, (DictConfig, ListConfig)) else node[key]
        if target_defaults is not None:
            default = target_defaults.get(key, inspect.Parameter.empty)
        elif isinstance(defaults, dict):
            default = defaults.get(key, _NONE)
        else:
            default = _NONE
        if isinstance(value, DictConfig) and (target_defaults is None or "_target_" in value):
            out.append(ConfigLine(depth, key, is_node=True))
            _lazy_lines(value, default if isinstance(default, dict) else None, depth + 1, out,
                        path + key + ".")
            continue
        if isinstance(value, (DictConfig, ListConfig)):  # a list, or a dict argument
            value = OmegaConf.to_container(value, resolve=True)
        if key == "_target_":
            mark = ""
        elif default is _NONE:
            mark = MARK_NEW
        elif default is inspect.Parameter.empty:
            mark, default = MARK_CHANGED, _NONE
        else:
            mark = MARK_CHANGED if _plain(value) != _plain(default) else ""
        out.append(ConfigLine(depth, key, value, mark=mark, default=default))


def config_lines(cfg):
    """The :class:`ConfigLine` list of a YAML config (a ``CfgNode``) or a Python config (an
    omegaconf ``DictConfig``), in the config's key order."""
    out = []
    if isinstance(cfg, CfgNode):
        _yaml_lines(cfg, get_cfg(), 0, out)
        return out
    zoo = {"train": OmegaConf.to_container(model_zoo_config("common/train.py").train,
                                           resolve=True)}
    _lazy_lines(cfg, zoo, 0, out)
    return out


def format_config_lines(lines, changed_only=False):
    """YAML-like text: ``key: value`` indented by depth, ``  # * detectron2: <default>`` or
    ``  # +`` after a marked key. ``changed_only``: marked keys and their parents only."""
    if changed_only:
        keep, kept, parents = [], set(), []
        for line in lines:
            parents = parents[:line.depth] + [line]
            if line.mark:  # the line and the nodes above it
                for p in parents:
                    if id(p) not in kept:
                        keep.append(p)
                        kept.add(id(p))
        lines = keep
    text = []
    for line in lines:
        head = "  " * line.depth + str(line.key) + ":"
        if not line.is_node:
            head += " " + _show(line.value)
        if line.mark == MARK_CHANGED:
            head += "  # * default: {}".format(_show(line.default)) \
                if line.default is not _NONE else "  # * (no default)"
        elif line.mark == MARK_NEW:
            head += "  # +"
        text.append(head)
    return "\n".join(text) + "\n"
