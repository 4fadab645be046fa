#!/usr/bin/env python
"""Build a pure-Python ``detectron2`` 0.6 wheel from the ``pb1-detectron2`` sdist.

detectron2 is not published on PyPI under its own name. The sdist ``pb1-detectron2==0.6``
carries detectron2's v0.6 Python package (byte-identical to the ``v0.6`` tag) but not its C++
sources, so its own ``setup.py`` cannot build. This script repackages its ``detectron2/``
directory (with the model-zoo YAML files) as a wheel named ``detectron2`` and adds a placeholder
``detectron2._C`` module: any use of a C++ op then raises an error that names the op.

Faster R-CNN needs none of those ops (they are rotated boxes, deformable convolution and the
fast COCO evaluator); the plugin builds ``COCOEvaluator(use_fast_impl=False)`` when it sees the
placeholder.

One source change: v0.6's ``detectron2/export/__init__.py`` imports its Caffe2 exporter
unconditionally, so ``import detectron2.export`` (``TracingAdapter``, used by
``tools/export_model.py``) fails without Caffe2, which no torch 2.x has. The import is made
optional exactly as upstream detectron2 did after v0.6 (:data:`EXPORT_INIT_OLD` ->
:data:`EXPORT_INIT_NEW`); nothing else is changed.

Usage::

    python tools/build_detectron2_fallback.py SDIST.tar.gz --sha256 HEX --wheel-dir DIR

A missing or unexpected sdist (another sha256, not a tar archive, unsafe or no detectron2
members) ends with one ``error: ...`` paragraph and exit status 2 (``--debug``: the traceback).
"""

import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile


def _load_errors():
    """frcnn_plugin/errors.py (the user errors and run_cli; standard library only), loaded by
    path: this script runs before detectron2, and so frcnn_plugin, can be imported."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "frcnn_plugin", "errors.py")
    spec = importlib.util.spec_from_file_location("frcnn_plugin_errors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


errors = _load_errors()

PLACEHOLDER_C = '''"""Placeholder for detectron2's C++ extension (absent: pure-Python build).

Installed by frcnn_plugin's fallback set-up. Any attribute access raises an error that names
the missing op. Faster R-CNN does not need these ops.
"""
IS_FRCNN_PLACEHOLDER = True


# Read by detectron2.utils.collect_env (printed at the start of every training run).
def get_compiler_version():
    return "none (pure-Python detectron2 fallback, no C++ ops)"


def get_cuda_version():
    return "none (pure-Python detectron2 fallback, no C++ ops)"


def has_cuda():
    return False


class MissingCppOpError(RuntimeError, AttributeError):
    pass


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise MissingCppOpError(
        "detectron2's C++ op '{}' is not available: this detectron2 is the pure-Python v0.6 "
        "fallback installed by frcnn_plugin's set-up (no detectron2/_C extension). Rotated-box "
        "ops, deformable convolution and the fast COCO evaluator need a source build of "
        "detectron2: set DETECTRON2_SOURCE to a checkout or git URL and re-run the set-up."
        .format(name)
    )
'''

# detectron2/export/__init__.py: v0.6's Caffe2 import, and upstream main's optional form.
EXPORT_INIT_OLD = "from .api import *\n"
EXPORT_INIT_NEW = """try:
    from caffe2.proto import caffe2_pb2 as _tmp  # noqa F401

    # caffe2 is optional (frcnn_plugin's fallback build: as upstream detectron2 after v0.6)
except ImportError:
    pass
else:
    from .api import *
"""

SETUP_PY = """from setuptools import find_packages, setup

setup(
    name="detectron2",
    version="0.6",
    description="detectron2 v0.6 (pure-Python build, no C++ ops; repackaged by frcnn_plugin)",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},
    include_package_data=False,
    python_requires=">=3.6",
    install_requires=%r,
)
"""

# detectron2 v0.6's own install_requires, less 'black==21.4b2' (only used to pretty-print lazy
# configs on save) and the caffe2 extras.
REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
    "scipy>1.5.1",
]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def patch_export_init(path):
    """Make the Caffe2 import of ``detectron2/export/__init__.py`` optional (see the module
    docstring); a file without v0.6's line is left as it is."""
    with open(path) as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    if EXPORT_INIT_OLD in lines:  # a line of its own, not indented (as after the patch)
        lines[lines.index(EXPORT_INIT_OLD)] = EXPORT_INIT_NEW
        with open(path, "w") as f:
            f.write("".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sdist", help="path to pb1-detectron2-0.6.tar.gz")
    parser.add_argument("--sha256", required=True, help="expected sha256 of the sdist")
    parser.add_argument("--wheel-dir", required=True, help="where to write the wheel")
    errors.add_debug_flag(parser)
    args = parser.parse_args(argv)

    if not os.path.isfile(args.sdist):
        raise errors.MissingFileError("sdist not found: {}".format(args.sdist))
    digest = sha256_of(args.sdist)
    if digest != args.sha256:
        raise errors.UserError(
            "sha256 mismatch for {}: got {}, expected {}. Refusing to build detectron2 from an "
            "unexpected file.".format(args.sdist, digest, args.sha256)
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            tar = tarfile.open(args.sdist)
        except tarfile.TarError as e:
            raise errors.UserError("{} is not a tar archive ({}); allowed: the pb1-detectron2 0.6 "
                                   "sdist (.tar.gz)".format(args.sdist, e))
        with tar:
            members = [m for m in tar.getmembers() if "/detectron2/" in "/" + m.name]
            for m in members:
                if m.issym() or m.islnk() or m.name.startswith("/") or ".." in m.name.split("/"):
                    raise errors.UserError("unsafe member in sdist: {}".format(m.name))
            tar.extractall(tmp, members=members)
        tops = os.listdir(tmp)
        pkg = os.path.join(tmp, tops[0], "detectron2") if len(tops) == 1 else ""
        if not os.path.isfile(os.path.join(pkg, "__init__.py")):
            raise errors.UserError("{} holds no detectron2 package".format(args.sdist))
        src = os.path.dirname(pkg)
        with open(os.path.join(pkg, "_C.py"), "w") as f:
            f.write(PLACEHOLDER_C)
        patch_export_init(os.path.join(pkg, "export", "__init__.py"))
        with open(os.path.join(src, "setup.py"), "w") as f:
            f.write(SETUP_PY % (REQUIRES,))
        os.makedirs(args.wheel_dir, exist_ok=True)
        subprocess.check_call(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                os.path.abspath(args.wheel_dir),
                src,
            ]
        )


if __name__ == "__main__":
    errors.run_cli(main)
