"""User errors: one ``error: ...`` paragraph on stderr, exit status 2, no traceback;
``--debug`` / ``FRCNN_DEBUG=1`` show it (frcnn_plugin.cli.run_cli)."""

import io
import os
import unittest
from contextlib import redirect_stderr

from frcnn_plugin.cli import (
    EXIT_USER_ERROR,
    BadImageError,
    ConfigError,
    MissingFileError,
    UnknownDatasetError,
    format_user_error,
    run_cli,
)


class TestRunCli(unittest.TestCase):
    """run_cli itself, in this process."""

    def run_main(self, error, argv=()):
        def main(argv):
            raise error

        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            run_cli(main, list(argv))
        return cm.exception.code, err.getvalue()

    def test_user_error_is_one_paragraph_and_status_2(self):
        code, err = self.run_main(ConfigError("Invalid config (2 problems):\n  - A=1\n\n  - B=2"))
        self.assertEqual(code, EXIT_USER_ERROR)
        self.assertEqual(err, "error: Invalid config (2 problems):\n  - A=1\n  - B=2\n")

    def test_unknown_dataset_message_is_not_quoted(self):
        # KeyError's own str() would print "'Data set ...'" with quotes
        code, err = self.run_main(UnknownDatasetError("Data set 'x' is not registered"))
        self.assertEqual((code, err), (2, "error: Data set 'x' is not registered\n"))

    def test_debug_flag_or_env_reraises(self):
        def main(argv):
            raise MissingFileError("Config file not found: x.yaml")

        with self.assertRaises(MissingFileError):
            run_cli(main, ["--config", "x.yaml", "--debug"])
        old = os.environ.get("FRCNN_DEBUG")
        os.environ["FRCNN_DEBUG"] = "1"
        try:
            with self.assertRaises(MissingFileError):
                run_cli(main, [])
            os.environ["FRCNN_DEBUG"] = "0"  # "0" means off
            code, _ = self.run_main(MissingFileError("x"))
            self.assertEqual(code, 2)
        finally:
            if old is None:
                del os.environ["FRCNN_DEBUG"]
            else:
                os.environ["FRCNN_DEBUG"] = old

    def test_bugs_keep_their_traceback(self):
        for bug in (ValueError("a bug"), KeyError("a bug"), FileNotFoundError("a bug")):

            def main(argv):
                raise bug

            with self.assertRaises(type(bug)):  # not turned into SystemExit
                run_cli(main, [])

    def test_a_tools_own_user_errors(self):
        def main(argv):
            raise LookupError("missing data set")

        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            run_cli(main, [], user_errors=(LookupError,))
        self.assertEqual((cm.exception.code, err.getvalue()), (2, "error: missing data set\n"))

    def test_user_errors_are_also_builtin_errors(self):
        self.assertIsInstance(ConfigError("x"), ValueError)
        self.assertIsInstance(MissingFileError("x"), FileNotFoundError)
        self.assertIsInstance(UnknownDatasetError("x"), KeyError)
        self.assertIsInstance(BadImageError("x"), RuntimeError)

    def test_dataloader_worker_traceback_is_stripped(self):
        # what torch's DataLoader re-raises from a worker: the worker's traceback as message
        text = ("Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback "
                "(most recent call last):\n  File \"x.py\", line 1, in f\n    raise e\n"
                "frcnn_plugin.cli.BadImageError: Cannot read test image a.png (OSError: bad)\n")
        self.assertEqual(format_user_error(BadImageError(text)),
                         "error: Cannot read test image a.png (OSError: bad)")
