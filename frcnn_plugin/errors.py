"""User errors: :class:`UserError` and its subclasses, and their report in the tools.

A *user error* is a mistake of the person running the plugin: a bad config key or value, a
missing or corrupt file, a bad flag. The plugin raises it as :class:`UserError`, most often
through one of the subclasses below, each also a subclass of the built-in exception raised for
that case before (``ValueError``, ``FileNotFoundError``, ...), so that ``except ValueError``
callers keep working. Anything else is a bug and keeps its traceback.

Every tool under ``tools/`` runs its ``main`` through :func:`run_cli`: a user error prints one
``error: ...`` paragraph to stderr and exits with status 2 (argparse's status for a bad flag),
without a traceback unless ``--debug`` is on the command line or ``FRCNN_DEBUG=1`` is set.
An interrupt (Ctrl-C, or SIGTERM, which :func:`run_cli` turns into :class:`Terminated`) prints
one ``interrupted: ...`` line instead of ``KeyboardInterrupt``'s traceback: what was completed
and kept and the command that continues, as the running tool registered it with
:class:`interrupt_note`; the exit status is 130 (SIGINT) or 143 (SIGTERM), as a shell reports
a process killed by them.

This module uses only the standard library: ``tools/build_detectron2_fallback.py`` loads it by
path, before detectron2 (and so ``frcnn_plugin``) can be imported. The tools import these names
from :mod:`frcnn_plugin.cli`, which re-exports them.
"""
import os
import shlex
import signal
import sys
import threading

__all__ = [
    "UserError",
    "ConfigError",
    "CheckpointError",
    "DataError",
    "MissingFileError",
    "UnknownDatasetError",
    "BadImageError",
    "OutputError",
    "OutputExistsError",
    "Terminated",
    "EXIT_USER_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "interrupt_note",
    "format_interrupt",
    "command_line",
    "DEBUG_FLAG",
    "DEBUG_ENV",
    "debug_requested",
    "add_debug_flag",
    "format_user_error",
    "run_cli",
]

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 128 + 2  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 128 + 15  # SIGTERM
DEBUG_FLAG = "--debug"
DEBUG_ENV = "FRCNN_DEBUG"


class UserError(Exception):
    """A mistake of the user; the message names the bad value and what is allowed."""


class ConfigError(UserError, ValueError):
    """A bad config key or value (or a bad combination of them)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or weights file that is corrupt, or does not fit the model."""


class DataError(UserError, ValueError):
    """A data set whose annotations cannot be used."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or a config names) does not exist."""


class UnknownDatasetError(UserError, KeyError):
    """A data set name that is not registered."""

    def __str__(self):  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


class BadImageError(UserError, RuntimeError):
    """Image files that cannot be read (a test image, or too many training images in a row)."""


class OutputError(UserError, OSError):
    """An output that cannot be written."""


class OutputExistsError(OutputError, FileExistsError):
    """An output that would replace an existing file."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread while :func:`run_cli` runs a tool (a
    ``KeyboardInterrupt``, so that the same clean-up runs as for Ctrl-C)."""


_NOTES = []


class interrupt_note:
    """While active (a context manager), ``note`` tells an interrupt what the tool has done:
    a string, or a function returning one (called at the interrupt), e.g. "stopped at iteration
    120 of 300; kept: out/model_0000099.pth; continue with: python tools/train_net.py ...
    --resume". The innermost active note is used; one line."""

    def __init__(self, note):
        self.note = note

    def __enter__(self):
        _NOTES.append(self.note)
        return self

    def __exit__(self, exc_type, exc, tb):
        # an interrupt leaves the note for run_cli to print (it clears them)
        if self.note in _NOTES and not (exc_type and issubclass(exc_type, KeyboardInterrupt)):
            _NOTES.remove(self.note)
        return False


def format_interrupt(error) -> str:
    """``interrupted (Ctrl-C): <note>`` (or ``terminated (SIGTERM): ...``), one line."""
    head = "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted (Ctrl-C)"
    note = None
    if _NOTES:
        try:
            note = _NOTES[-1]() if callable(_NOTES[-1]) else _NOTES[-1]
        except Exception as e:  # the note must not hide the interrupt
            note = "(no details: {}: {})".format(type(e).__name__, e)
    if not note:
        note = "nothing half-written was left; run the command again to redo it"
    return "{}: {}".format(head, " ".join(str(note).split()))


def command_line(argv, add=(), drop=()):
    """The command that ran this tool (``python tools/NAME.py ARGS``), quoted for a shell, with
    the flags ``add`` put first (before trailing ``KEY VALUE`` overrides, which would swallow
    them) unless present, and the arguments ``drop`` removed."""
    args = [a for a in argv if a not in drop]
    extra = [a for a in add if a not in args]
    script = os.path.relpath(sys.argv[0]) if sys.argv and sys.argv[0].endswith(".py") else "TOOL"
    return " ".join(shlex.quote(a) for a in ["python", script] + extra + args)


def _raise_terminated(signum, frame):
    raise Terminated()


def debug_requested(argv=None) -> bool:
    """True if ``--debug`` is in ``argv`` (default ``sys.argv``) or ``FRCNN_DEBUG`` is set to
    anything other than ``""`` or ``"0"``."""
    argv = sys.argv[1:] if argv is None else argv
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def add_debug_flag(parser):
    """Add ``--debug`` (show the traceback of a user error) to an ``argparse`` parser."""
    parser.add_argument(
        DEBUG_FLAG, action="store_true",
        help="show the traceback of an error (also: environment variable {}=1)".format(DEBUG_ENV),
    )
    return parser


def format_user_error(error) -> str:
    """``error: <message>``, one paragraph (blank lines of the message removed).

    An error re-raised by a torch ``DataLoader`` worker carries the worker's traceback as its
    message ("Caught X in DataLoader worker process 0. Original Traceback ..."): only the
    original message, after the traceback's last ``X: ``, is kept.
    """
    text = str(error).strip() or type(error).__name__
    if "Original Traceback (most recent call last)" in text:
        head = type(error).__name__ + ": "
        text = text[text.rfind(head) + len(head):] if head in text else text
    return "error: " + "\n".join(line for line in text.splitlines() if line.strip())


def run_cli(main, argv=None, user_errors=()):
    """Run ``main(argv)`` and report user errors cleanly.

    Args:
        main (callable): the tool's entry point, called with ``argv``.
        argv (list[str] or None): the arguments (default ``sys.argv[1:]``).
        user_errors (tuple[type]): further exception classes to treat as user errors (e.g. a
            library's own "option not allowed" exception).

    Returns:
        what ``main`` returns. A :class:`UserError` (or one of ``user_errors``) prints
        :func:`format_user_error` to stderr and exits with status 2, unless
        :func:`debug_requested`, in which case it propagates with its traceback. Ctrl-C
        (``KeyboardInterrupt``) and SIGTERM (:class:`Terminated`, while ``main`` runs in the
        main thread) print :func:`format_interrupt`'s one line and exit with status 130 / 143
        (with ``--debug``: the traceback). Every other exception propagates unchanged.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return main(argv)
    except (UserError,) + tuple(user_errors) as e:
        if debug_requested(argv):
            raise
        sys.stdout.flush()
        print(format_user_error(e), file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as e:
        if debug_requested(argv):
            raise
        try:
            sys.stdout.flush()
        except Exception:  # a closed pipe
            pass
        print(format_interrupt(e), file=sys.stderr, flush=True)
        del _NOTES[:]
        sys.exit(EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
