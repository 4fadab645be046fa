"""Small file helpers shared by the checkpointer, the weight conversion, the data checks and
:mod:`frcnn_plugin.outputs` (every tool's outputs)."""
import os

from .errors import MissingFileError

__all__ = ["is_local", "atomic_write", "require_file", "load_error_cause"]


def is_local(path) -> bool:
    """True for a path on this machine's file system, False for an empty path or a
    ``scheme://`` path (handled by detectron2's PathManager: http, detectron2://, s3, ...)."""
    return bool(path) and "://" not in str(path)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on a folder; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write(path, write_fn, mode="wb", fsync=True):
    """Write ``path`` atomically: ``write_fn(f)`` into ``path.tmp-<pid>``, fsync, ``os.replace``,
    fsync the folder.

    Readers (and a later resume) see either the old file or the complete new one; a failure
    (or an interrupt) leaves no temporary file behind. ``fsync=False`` skips the two fsyncs
    (many small files, e.g. pictures: still never half-written, but not forced to the disk).
    """
    tmp = "{}.tmp-{}".format(path, os.getpid())
    try:
        with open(tmp, mode) as f:
            write_fn(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if fsync:
        _fsync_dir(os.path.dirname(os.path.abspath(path)))


def require_file(path, what, allowed=""):
    """``path`` is an existing file: else :class:`~frcnn_plugin.errors.MissingFileError`
    "<what> not found: <path>", or "<what> <path> is a folder, not a file" (with ``allowed``,
    e.g. "allowed: a checkpoint file")."""
    tail = "; " + allowed if allowed else ""
    if os.path.isdir(path):
        raise MissingFileError("{} {} is a folder, not a file{}".format(what, path, tail))
    if not os.path.isfile(path):
        raise MissingFileError("{} not found: {}{}".format(what, path, tail))
    return path


def load_error_cause(error) -> str:
    """Why ``torch.load`` failed, in one line, without PyTorch's advice to retry with
    ``weights_only=False`` (which would run whatever code the file holds: never the way to read
    a file that is corrupt or not a checkpoint)."""
    text = str(error)
    if "weights_only" in text or "Weights only load failed" in text:
        for line in text.splitlines():
            if line.strip().startswith("WeightsUnpickler error:"):
                return "UnpicklingError: " + line.split(":", 1)[1].strip()
        return ("UnpicklingError: it holds Python objects other than tensors, which are not "
                "loaded (they could run code)")
    first = text.splitlines()[0] if text.strip() else ""
    return "{}: {}".format(type(error).__name__, first) if first else type(error).__name__
