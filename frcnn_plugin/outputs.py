"""One way for a tool to write: every output place checked before any work, every file written
atomically.

* :func:`check_output_file` / :func:`check_output_dir`: an output file or folder given on the
  command line is checked before the tool does any work: its place can be written (the nearest
  existing folder above it is a folder and writable), it is of the right kind (a file where a
  file goes, a folder where a folder goes) and it holds no earlier result unless the user said
  ``--overwrite``. Nothing is created by the check.
* :func:`check_run_dir`: the output folder of a training run: a folder that holds a finished or
  interrupted run is refused for a fresh run unless ``--resume`` (continue it) or
  ``--overwrite`` (start again: :func:`clear_run` removes the old run's checkpoints, metrics and
  results when the new run starts).
* :func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`save_figure`,
  :func:`save_image`: atomic writes (a temporary file renamed over the target), so an
  interrupted or failed tool leaves either the old file or the complete new one.

All errors are :class:`~frcnn_plugin.errors.OutputError` (an ``OSError``) or
:class:`~frcnn_plugin.errors.OutputExistsError` (a ``FileExistsError``), naming the flag, the
path and what is allowed.
"""
import glob
import json
import os
import tempfile
from typing import Iterable, List, Optional, Sequence

from PIL import Image

from .errors import OutputError, OutputExistsError
from .files import atomic_write

__all__ = [
    "RUN_FILES",
    "check_output_file",
    "check_output_dir",
    "check_run_dir",
    "existing_run",
    "clear_run",
    "write_bytes",
    "write_text",
    "write_json",
    "save_figure",
    "save_image",
]

# what a training run leaves in its output folder (detectron2's checkpointer and JSONWriter,
# the tools' eval_results.json)
RUN_FILES = ("last_checkpoint", "model_final.pth", "metrics.json", "eval_results.json")
_CHECKPOINTS = "model_*.pth"


def _existing_parent(path: str) -> str:
    """The nearest existing path at or above ``path`` (absolute)."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _check_writable_place(path: str, flag: str, what: str):
    """The nearest existing folder at or above ``path`` (a file: above it) is a folder that can
    be written."""
    place = _existing_parent(os.path.dirname(os.path.abspath(path)) if what == "file" else path)
    if not os.path.isdir(place):
        raise OutputError("{} {}: {} is a file, not a folder, so the {} cannot be written there; "
                          "allowed: a path under a folder".format(flag, path, place, what))
    try:  # permissions, a read-only file system: try it (root passes os.access everywhere)
        with tempfile.NamedTemporaryFile(dir=place, prefix=".frcnn-write-test-"):
            pass
    except OSError as e:
        raise OutputError(e.errno, "{} {}: cannot write in {} ({}); allowed: a writable place, "
                                   "or fix its permissions".format(
                                       flag, path, place, e.strerror or e)) from e


def check_output_file(path: str, flag: str, overwrite: bool = False,
                      overwrite_flag: str = "--overwrite") -> str:
    """Check an output file before any work: not a folder, its place writable, and not an
    existing file unless ``overwrite``. Nothing is created. Returns ``path``.

    Raises:
        OutputError: a folder where the file goes; a place that cannot be written.
        OutputExistsError: the file exists and ``overwrite`` is False.
    """
    if not path:
        raise OutputError("{} is empty; allowed: a file path".format(flag))
    if os.path.isdir(path):
        raise OutputError("{} {} is a folder; allowed: a file path (e.g. {})".format(
            flag, path, os.path.join(path, "FILE")))
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError("{} {} exists already; allowed: {} to replace it, or another "
                                "path".format(flag, path, overwrite_flag))
    _check_writable_place(path, flag, "file")
    return path


def check_output_dir(path: str, flag: str, results: Sequence[str] = (),
                     overwrite: bool = False, overwrite_flag: str = "--overwrite") -> str:
    """Check an output folder before any work: a folder (or a path where one can be created),
    writable, and holding none of ``results`` (file names or glob patterns this tool writes
    there) unless ``overwrite``. Nothing is created. Returns ``path``.

    Raises:
        OutputError: a file where the folder goes; a place that cannot be written.
        OutputExistsError: results of an earlier run are there and ``overwrite`` is False
            (they are named).
    """
    if not path:
        raise OutputError("{} is empty; allowed: a folder".format(flag))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError("{} {} is a file; allowed: a folder (existing or to be created)".format(
            flag, path))
    _check_writable_place(path, flag, "folder")
    if not overwrite:
        found = existing_results(path, results)
        if found:
            raise OutputExistsError(
                "{} {} holds the results of an earlier run ({}{}); allowed: {} to replace them, "
                "or another folder".format(flag, path, ", ".join(found[:5]),
                                           ", ..." if len(found) > 5 else "", overwrite_flag))
    return path


def existing_results(folder: str, names: Iterable[str]) -> List[str]:
    """The entries of ``names`` (file names or glob patterns, relative to ``folder``) that
    exist, as relative paths."""
    found = []
    for name in names:
        for match in sorted(glob.glob(os.path.join(glob.escape(folder), name))):
            rel = os.path.relpath(match, folder)
            if rel not in found:
                found.append(rel)
    return found


def existing_run(folder: str) -> Optional[str]:
    """None if ``folder`` holds no training run; else what it holds: "a finished run" (a
    ``model_final.pth``) or "an interrupted run" (checkpoints or metrics, no final model), with
    its files."""
    if not folder or not os.path.isdir(folder):
        return None
    found = existing_results(folder, RUN_FILES + (_CHECKPOINTS,))
    if not found:
        return None
    kind = "a finished run" if "model_final.pth" in found else "an interrupted run"
    return "{} ({}{})".format(kind, ", ".join(found[:4]), ", ..." if len(found) > 4 else "")


def check_run_dir(path: str, key: str, resume: bool = False, overwrite: bool = False,
                  eval_only: bool = False) -> Optional[str]:
    """Check a training run's output folder before anything is written: a folder that can be
    written and, for a fresh run (no ``resume``, no ``eval_only``), no earlier run there unless
    ``overwrite``. Returns :func:`existing_run` of the folder.

    Raises:
        OutputError: ``path`` is empty, a file, or cannot be written.
        OutputExistsError: a fresh run into a folder that holds a run; the message names it and
            the two flags that proceed (``--resume``, ``--overwrite``).
    """
    check_output_dir(path, key)
    run = existing_run(path)
    if run and not (resume or overwrite or eval_only):
        raise OutputExistsError(
            "{}={} holds {}; a fresh run would replace its checkpoints and results. Allowed: "
            "--resume to continue that run, --overwrite to start again there (its checkpoints, "
            "metrics.json and eval_results.json are deleted), or another {}".format(
                key, path, run, key))
    return run


def clear_run(path: str) -> List[str]:
    """Delete an earlier run's checkpoints (``model_*.pth``, ``last_checkpoint``),
    ``metrics.json`` and ``eval_results.json`` from ``path`` (``--overwrite``: the new run's
    files are not mixed with the old ones; detectron2's JSONWriter appends to metrics.json).
    ``log.txt``, ``config.yaml`` and TensorBoard events are left (appended to / replaced).
    Returns the deleted names."""
    found = existing_results(path, RUN_FILES + (_CHECKPOINTS,))
    for name in found:
        os.remove(os.path.join(path, name))
    return found


def _write(path: str, write_fn, mode: str, fsync: bool = True):
    try:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        atomic_write(path, write_fn, mode=mode, fsync=fsync)
    except OSError as e:
        raise OutputError(e.errno, "Cannot write {} ({}); allowed: a writable place".format(
            path, e.strerror or e)) from e
    return path


def write_bytes(path: str, data: bytes) -> str:
    """``data`` to ``path``, atomically (the folder is created)."""
    return _write(path, lambda f: f.write(data), "wb")


def write_text(path: str, text: str) -> str:
    """``text`` to ``path``, atomically (the folder is created)."""
    return _write(path, lambda f: f.write(text), "w")


def write_json(path: str, obj, **kwargs) -> str:
    """``obj`` as JSON to ``path``, atomically (the folder is created); ``kwargs`` go to
    ``json.dump`` (default ``indent=2``)."""
    kwargs.setdefault("indent", 2)
    return _write(path, lambda f: json.dump(obj, f, **kwargs), "w")


def save_figure(fig, path: str, **kwargs) -> str:
    """A matplotlib figure as PNG to ``path``, atomically."""
    return _write(path, lambda f: fig.savefig(f, format="png", **kwargs), "wb")


def save_image(image, path: str, fsync: bool = True, **kwargs) -> str:
    """A PIL image to ``path`` (its format from the extension), atomically."""
    fmt = Image.registered_extensions().get(os.path.splitext(path)[1].lower(), "PNG")
    return _write(path, lambda f: image.save(f, format=fmt, **kwargs), "wb", fsync=fsync)
