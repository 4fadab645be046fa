"""detectron2's export helpers (``TracingAdapter``, ``dump_torchscript_IR``) on every build.

detectron2 v0.6's ``detectron2/export/__init__.py`` imports its Caffe2 exporter first, so
``import detectron2.export`` fails where Caffe2 is absent (every torch 2.x), although
``flatten.py`` and ``torchscript.py`` need no Caffe2; upstream main made Caffe2 optional there.
:func:`d2_export_module` imports the package as it is where that works, and otherwise registers
the ``detectron2.export`` package without running its ``__init__`` (its submodules are then
importable by their full names, ``detectron2.export.api`` stays unavailable). The plugin's
fallback build patches the ``__init__`` as upstream did (``tools/build_detectron2_fallback.py``);
this covers a v0.6 installed another way.
"""
import importlib
import os
import sys
import types

import detectron2

__all__ = ["d2_export_module", "TracingAdapter", "dump_torchscript_IR"]


def d2_export_module(name: str):
    """``detectron2.export.<name>`` (e.g. ``"flatten"``), also where ``detectron2.export``'s
    ``__init__`` cannot import (see the module docstring)."""
    full = "detectron2.export." + name
    try:
        importlib.import_module("detectron2.export")
    except ImportError as e:
        if "caffe2" not in str(e):
            raise
        package = types.ModuleType("detectron2.export")
        package.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
        package.__package__ = "detectron2.export"
        sys.modules["detectron2.export"] = package
        detectron2.export = package
    return importlib.import_module(full)


TracingAdapter = d2_export_module("flatten").TracingAdapter
dump_torchscript_IR = d2_export_module("torchscript").dump_torchscript_IR
