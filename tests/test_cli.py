"""User errors in every tool: one ``error: ...`` paragraph on stderr, exit status 2, no
traceback; ``--debug`` / ``FRCNN_DEBUG=1`` show it (frcnn_plugin.cli.run_cli). The tools run as
subprocesses on real files; each mistake is found before a model is built where possible."""

import io
import os
import subprocess
import sys
import unittest
from contextlib import redirect_stderr

import numpy as np
import pytest
from PIL import Image

from frcnn_plugin.cli import (
    EXIT_USER_ERROR,
    BadImageError,
    ConfigError,
    MissingFileError,
    UnknownDatasetError,
    UserError,
    format_user_error,
    run_cli,
)
from tests.conftest import CONFIGS, REPO, TINY_MODEL, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")


def run_tool(name, *args, cwd):
    """tools/<name>.py as a subprocess, importing this checkout's frcnn_plugin."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("FRCNN_DEBUG", None)
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", name + ".py"), *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
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


def assert_clean_error(test, proc, *named):
    """Exit status 2, one ``error:`` paragraph at the end of stderr naming ``named``, no
    traceback."""
    test.assertEqual(proc.returncode, EXIT_USER_ERROR, proc.stderr[-3000:])
    test.assertNotIn("Traceback", proc.stderr)
    test.assertNotIn("Traceback", proc.stdout)
    lines = proc.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    test.assertEqual(len(starts), 1, proc.stderr[-3000:])
    paragraph = "\n".join(lines[starts[0]:])
    test.assertNotIn("\n\n", paragraph.strip())  # one paragraph, and the last thing printed
    for value in named:
        test.assertIn(value, paragraph)
    return paragraph


def _cases(tmp):
    """name -> (tool, argv): one user mistake per tool, on real files under ``tmp``."""
    corrupt = os.path.join(tmp, "corrupt.pth")
    with open(corrupt, "wb") as f:
        f.write(b"PK\x03\x04 a truncated download")
    image = os.path.join(tmp, "image.png")
    Image.fromarray(np.full((40, 56, 3), 100, dtype=np.uint8)).save(image)
    with open(os.path.join(tmp, "kept.pth"), "w") as f:
        f.write("precious")
    return {
        "train_net": ("train_net", ["--config", "nope.yaml"]),
        "train_net_debug": ("train_net", ["--debug", "--config", "nope.yaml"]),
        "train_net_2_processes": ("train_net", [
            "--config", DEMO, "--num-processes", "2", "--dist-url", "auto", "--eval-only",
            "OUTPUT_DIR", os.path.join(tmp, "out"), *TINY_MODEL, "MODEL.WEIGHTS", corrupt]),
        "demo": ("demo", ["MODEL.VGG.DEPHT", "16"]),
        "inspect_pipeline": ("inspect_pipeline", [
            "--config-file", DEMO, "--image", os.path.join(tmp, "nope.png")]),
        "visualize_anchors": ("visualize_anchors", [
            "--config-file", DEMO, "--image", image, "--weights", corrupt, "--out-dir",
            os.path.join(tmp, "pictures"), *TINY_MODEL]),
        "analyze_anchors": ("analyze_anchors", [
            "--config-file", DEMO, "--dataset", "frcnn_shapes_trian"]),
        "benchmark": ("benchmark", ["--config-file", "nope.yaml", "--task", "inference"]),
        "benchmark_anchors": ("benchmark_anchors", ["--device", "gpu"]),
        "convert_vgg_weights": ("convert_vgg_weights", [
            corrupt, os.path.join(tmp, "kept.pth"), "--overwrite"]),
        "build_detectron2_fallback": ("build_detectron2_fallback", [
            os.path.join(tmp, "nope.tar.gz"), "--sha256", "0" * 64, "--wheel-dir", tmp]),
        "build_detectron2_fallback_sha256": ("build_detectron2_fallback", [
            corrupt, "--sha256", "0" * 64, "--wheel-dir", tmp]),
    }


@pytest.mark.usefixtures("one_thread")
class TestToolsUserErrors(unittest.TestCase):
    """One user mistake per tool, run as a subprocess (two at a time: each spends seconds
    importing torch and detectron2); then the same mistake with --debug in this process: the
    exception propagates (Python prints its traceback)."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _run_all(cls, request, tmp_path_factory):
        from concurrent.futures import ThreadPoolExecutor

        tmp = str(tmp_path_factory.mktemp("cli"))
        cases = _cases(tmp)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {name: pool.submit(run_tool, tool, *argv, cwd=tmp)
                       for name, (tool, argv) in cases.items()}
        request.cls.tmp = tmp
        request.cls.cases = cases
        request.cls.procs = {name: f.result() for name, f in futures.items()}

    def check(self, case, error, *named, entry="main"):
        """The subprocess's clean error; with --debug (in this process) the exception."""
        paragraph = assert_clean_error(self, self.procs[case], *named)
        tool, argv = self.cases[case]
        with self.assertRaises(error) as cm:
            run_cli(getattr(load_tool(tool), entry), ["--debug", *argv])
        for value in named:
            self.assertIn(value, str(cm.exception))
        return paragraph

    def test_train_net_missing_config(self):
        self.check("train_net", MissingFileError, "Config file not found: nope.yaml",
                   entry="_cli")

    def test_train_net_debug_flag_shows_the_traceback(self):
        proc = self.procs["train_net_debug"]
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("Traceback", proc.stderr)
        self.assertIn("MissingFileError: Config file not found: nope.yaml", proc.stderr)

    def test_train_net_bad_value_before_anything_is_written(self):
        out = os.path.join(self.tmp, "never_written")
        train_net = load_tool("train_net")
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            train_net.cli(["--config", DEMO, "OUTPUT_DIR", out,
                           "MODEL.RPN.POSITIVE_FRACTION", "1.5"])
        self.assertEqual(cm.exception.code, 2)
        self.assertIn("error: Invalid config (1 problem):\n  - MODEL.RPN.POSITIVE_FRACTION=1.5 "
                      "is invalid; allowed: a number in (0, 1]", err.getvalue())
        self.assertFalse(os.path.exists(out))

    def test_train_net_error_in_one_of_two_processes(self):
        """A corrupt MODEL.WEIGHTS found by the processes of a 2-process CPU job: one clean
        paragraph from the launcher, not DistributedTrainingError's traceback."""
        corrupt = os.path.join(self.tmp, "corrupt.pth")
        text = assert_clean_error(self, self.procs["train_net_2_processes"],
                                  "Cannot read checkpoint " + corrupt)
        self.assertRegex(text, r"in process [01] of 2; the others were stopped")

    def test_demo_bad_key(self):
        self.check("demo", ConfigError, "MODEL.VGG.DEPHT", "Did you mean: MODEL.VGG.DEPTH")

    def test_inspect_pipeline_missing_image(self):
        self.check("inspect_pipeline", MissingFileError,
                   "Image not found: " + os.path.join(self.tmp, "nope.png"))

    def test_visualize_anchors_corrupt_weights(self):
        self.check("visualize_anchors", ValueError,
                   "Cannot read checkpoint " + os.path.join(self.tmp, "corrupt.pth"))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "pictures")))

    def test_analyze_anchors_unknown_dataset(self):
        text = self.check("analyze_anchors", KeyError, "'frcnn_shapes_trian' is not registered")
        self.assertIn("frcnn_shapes_train", text)  # the close registered name

    def test_benchmark_missing_config(self):
        self.check("benchmark", MissingFileError, "Config file not found: nope.yaml")

    def test_benchmark_anchors_bad_device(self):
        self.check("benchmark_anchors", UserError, "--device 'gpu'", "allowed: cpu, cuda")

    def test_convert_vgg_weights_corrupt_input_keeps_output(self):
        self.check("convert_vgg_weights", ValueError,
                   "Cannot read " + os.path.join(self.tmp, "corrupt.pth"))
        with open(os.path.join(self.tmp, "kept.pth")) as f:
            self.assertEqual(f.read(), "precious")

    def test_build_detectron2_fallback_missing_sdist(self):
        self.check("build_detectron2_fallback", FileNotFoundError,
                   "sdist not found: " + os.path.join(self.tmp, "nope.tar.gz"))

    def test_build_detectron2_fallback_wrong_sha256(self):
        self.check("build_detectron2_fallback_sha256", Exception, "sha256 mismatch", "0" * 64)

    def test_bad_flag_is_argparse_status_2(self):
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            run_cli(load_tool("benchmark_anchors").main, ["--iters", "0"])
        self.assertEqual(cm.exception.code, 2)
        self.assertIn("argument --iters: '0': allowed: an integer >= 1", err.getvalue())
