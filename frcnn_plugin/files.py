"""Small file helpers shared by the checkpointer, the weight conversion and the data checks."""
import os

__all__ = ["is_local", "atomic_write"]


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


def atomic_write(path, write_fn, mode="wb"):
    """Write ``path`` atomically: ``write_fn(f)`` into ``path.tmp-<pid>``, fsync, ``os.replace``,
    fsync the folder.

    Readers (and a later resume) see either the old file or the complete new one; a failure
    leaves no temporary file behind.
    """
    tmp = "{}.tmp-{}".format(path, os.getpid())
    try:
        with open(tmp, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
