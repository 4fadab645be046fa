"""Every tool × every kind of user mistake: one ``error:`` paragraph naming the bad value, exit
status 2, no traceback, and the output place byte-identical before and after.

The table :data:`TOOLS` has one line per tool: its entry point, a command line with slots, and
its numeric flag. **Adding a tool is one line** (``"name": Tool(...)``): the mistakes of
:data:`KINDS` are derived from the slots. Slots in ``argv``:

* ``{in}``: the tool's main input file (a config, a checkpoint, an image, a results file);
  ``in_suffix`` is its extension. Kinds "missing", "wrong_kind" (a folder), "corrupt" (random
  bytes) put a bad file there;
* ``{out}``: its output (a folder, or a file with ``out_file=True``); ``result``: a file the
  tool writes there (for a file output: ``""``, the file itself). Kinds "unwritable" (a file
  where the folder goes), "existing" (an earlier result there, no ``--overwrite``);
* ``{cfg}``: a YAML config (the demo config; kind "bad_yaml": one with a syntax error) where the
  tool reads one besides ``{in}``; ``{image}``: an image; ``{tiny}``: the tiny model's
  overrides (``tests.conftest.TINY_MODEL``);
* ``{num}``: ``numeric`` is (tokens of a value of the wrong type, tokens of a value out of
  range), each also named in the error.

A kind a tool has no place for is left out (``None``, or no slot). The runs are in-process
(``run_cli(main)``, catching ``SystemExit``): each mistake is found before any work, so the
whole matrix takes seconds. Interrupts (Ctrl-C, SIGTERM) are real signals to a subprocess:
``TestInterrupts``, a handful.
"""
import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import NamedTuple, Optional, Tuple

import numpy as np
import pytest
import torch
from PIL import Image

from frcnn_plugin.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USER_ERROR, run_cli
from tests.conftest import CONFIGS, REPO, TINY_MODEL, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
LAZY_DEMO = os.path.join(CONFIGS, "lazy", "vgg16_frcnn_shapes_demo.py")


class Tool(NamedTuple):
    argv: str  # the command line with slots (see the module docstring)
    in_suffix: Optional[str] = None  # None: no input file slot
    result: Optional[str] = None  # None: no "existing" case (e.g. a tool that resumes)
    out_file: bool = False  # {out} is a file, not a folder
    numeric: Optional[Tuple[str, str]] = None  # (wrong type, out of range) tokens
    entry: str = "main"
    in_value: str = ""  # a good {in} (most kinds need only a plausible one)


# one line per tool
TOOLS = {
    "train_net": Tool("--config {in} OUTPUT_DIR {out} {num} {tiny}", ".yaml", "model_final.pth",
                      numeric=("SOLVER.MAX_ITER abc", "SOLVER.MAX_ITER -4"), entry="_cli",
                      in_value=DEMO),
    "lazy_train_net": Tool("--config-file {in} train.output_dir={out} {num}", ".py",
                           "last_checkpoint", numeric=("train.max_iter=abc", "train.max_iter=-4"),
                           entry="_cli", in_value=LAZY_DEMO),
    "demo": Tool("--config-file {in} OUTPUT_DIR {out} {num} {tiny}", ".yaml", "model_final.pth",
                 numeric=("SOLVER.MAX_ITER abc", "SOLVER.MAX_ITER -4"), in_value=DEMO),
    "predict": Tool("--config-file {cfg} --weights {in} --input {image} --output {out} {num} "
                    "{tiny}", ".pth", "predictions.json", numeric=("--batch-size abc",
                                                                 "--batch-size 0")),
    "export_model": Tool("--config-file {cfg} --weights {in} --sample-image {image} --output "
                         "{out} {num} {tiny}", ".pth", "model.ts",
                         numeric=("--box-atol abc", "--box-atol -1")),
    "convert_vgg_weights": Tool("{in} {out}", ".pth", "", out_file=True),
    "compress_fc": Tool("{in} {out} {num}", ".pth", "", out_file=True,
                        numeric=("--ranks abc 1", "--ranks -1 1")),
    "inspect_pipeline": Tool("--config-file {cfg} --image {in} --json {out} {num} {tiny}",
                             ".png", "", out_file=True,
                             numeric=("--gt-box a,b,c,d", "--gt-box 30,30,10,10")),
    "visualize_anchors": Tool("--config-file {cfg} --image {in} --out-dir {out} {num} {tiny}",
                              ".png", "base_anchors.png", numeric=("--scale abc", "--scale -2")),
    "analyze_anchors": Tool("--config-file {in} --dataset frcnn_test_val --out-dir {out} {num} "
                            "{tiny}", ".yaml", "anchor_fit.png",
                            numeric=("--max-images abc", "--max-images -1"), in_value=DEMO),
    "analyze_results": Tool("--results {in} --dataset frcnn_test_val --out-dir {out} {num}",
                            ".json", "per_class_ap.csv", numeric=("--iou abc", "--iou 1.5")),
    "plot_metrics": Tool("{in} --out {out} {num}", ".json", "", out_file=True,
                         numeric=("--smooth abc", "--smooth 0")),
    "benchmark": Tool("--config-file {in} --task inference --json {out} {num}", ".yaml", "",
                      out_file=True, numeric=("--threads abc", "--threads -2"), in_value=DEMO),
    "ablate_accuracy": Tool("--config-file {in} --out-dir {out} {num}", ".yaml", None,
                            numeric=("--seeds abc", "--seeds 0"), in_value=DEMO),
    "benchmark_anchors": Tool("{num}", numeric=("--iters abc", "--iters 0")),
    "analyze_model": Tool("--config-file {cfg} --weights {in} --image-size 32x32 {num} {tiny}",
                          ".pth", numeric=("-n abc", "-n 0")),
    "browse_dataset": Tool("--config-file {in} --output-dir {out} {num}", ".yaml", "00000_a.png",
                           numeric=("-n abc", "-n 0"), in_value=DEMO),
    "print_config": Tool("--config-file {in} --output {out}", ".yaml", "", out_file=True,
                         in_value=DEMO),
    "test_robustness": Tool("--config-file {cfg} --weights {in} --output-dir {out} --dataset "
                            "frcnn_test_val -n 1 {num} {tiny}", ".pth", "robustness.json",
                            numeric=("--severities abc", "--severities 6")),
    "benchmark_guard": Tool("{num}", numeric=("--threads abc", "--threads -2")),
}

KINDS = ("missing", "wrong_kind", "corrupt", "unwritable", "existing", "bad_yaml", "bad_type",
         "out_of_range")


def applies(tool: Tool, kind: str) -> bool:
    if kind in ("missing", "wrong_kind", "corrupt"):
        return tool.in_suffix is not None
    if kind == "unwritable":
        return "{out}" in tool.argv
    if kind == "existing":
        return "{out}" in tool.argv and tool.result is not None
    if kind == "bad_yaml":
        return "{cfg}" in tool.argv or tool.in_suffix in (".yaml", ".py")
    return tool.numeric is not None


CASES = [(name, kind) for name, tool in TOOLS.items() for kind in KINDS if applies(tool, kind)]


def snapshot(folder):
    """relative path -> bytes (None for a folder) of everything under ``folder``."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            found[os.path.relpath(os.path.join(root, d), folder)] = None
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, folder)] = fh.read()
    return found


def build_case(tool: Tool, kind: str, tmp: str):
    """(argv, the values the error must name, the folder that must not change)."""
    rng = np.random.default_rng(0)
    image = os.path.join(tmp, "image.png")
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
    places = os.path.join(tmp, "outputs")  # everything the tool might write is under here
    os.makedirs(places)
    out = os.path.join(places, "out.json" if tool.out_file else "out")
    named = []
    cfg = DEMO
    inp = tool.in_value or os.path.join(tmp, "input" + (tool.in_suffix or ""))
    if tool.in_suffix and not tool.in_value:
        with open(inp, "wb") as f:  # a plausible input (the tools fail before reading it)
            f.write(b"[]" if tool.in_suffix == ".json" else b"placeholder")
        if tool.in_suffix == ".png":
            inp = image
    num = ""
    if kind == "missing":
        inp = os.path.join(tmp, "nope" + tool.in_suffix)
        named.append(inp)
    elif kind == "wrong_kind":
        inp = os.path.join(tmp, "a_folder" + tool.in_suffix)
        os.makedirs(inp)
        named.append(inp)
    elif kind == "corrupt":
        inp = os.path.join(tmp, "corrupt" + tool.in_suffix)
        with open(inp, "wb") as f:
            f.write(bytes(rng.integers(128, 256, 600, dtype=np.uint8)))  # not text, not zip
        named.append(inp)
    elif kind == "unwritable":
        blocker = os.path.join(places, "a_file")
        with open(blocker, "w") as f:
            f.write("not a folder")
        out = os.path.join(blocker, os.path.basename(out))
        named.append(out)
    elif kind == "existing":
        target = out if tool.result == "" else os.path.join(out, tool.result)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write("an earlier result")
        named.append(out)
    elif kind == "bad_yaml":
        bad = os.path.join(tmp, "bad" + (".py" if tool.in_suffix == ".py" else ".yaml"))
        with open(bad, "w") as f:
            f.write("_BASE_: x.yaml\nMODEL:\n  VGG: [1,\n" if bad.endswith(".yaml")
                    else "from x import (\n")
        if "{cfg}" in tool.argv:
            cfg = bad
        else:
            inp = bad
        named += [bad, "line"]
    elif kind in ("bad_type", "out_of_range"):
        num = tool.numeric[0 if kind == "bad_type" else 1]
        tokens = num.split()  # the bad value: a flag's first, an override's value
        named.append(tokens[1] if tokens[0].startswith("--") else tokens[-1].split("=")[-1])
    argv = tool.argv.format(**{"in": inp, "out": out, "cfg": cfg, "image": image, "num": num,
                               "tiny": "TINY_MODEL"}).split()
    argv = [t for a in argv for t in (TINY_MODEL if a == "TINY_MODEL" else [a])]
    return argv, named, places


def run_in_process(name: str, tool: Tool, argv):
    module = load_tool(name)
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        run_cli(getattr(module, tool.entry), argv,
                user_errors=getattr(module, "USER_ERRORS", ()))
    return exit_info.value.code, out.getvalue(), err.getvalue()


def error_paragraph(stderr: str) -> str:
    """The one error paragraph: the tool's ``error: ...`` or argparse's ``prog: error: ...``,
    the last thing printed."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith("error: ") or ": error: " in line]
    assert len(starts) == 1, stderr[-3000:]
    paragraph = "\n".join(lines[starts[0]:])
    assert "\n\n" not in paragraph.strip(), stderr[-3000:]
    return paragraph


@pytest.mark.usefixtures("tiny_shapes", "one_thread")
@pytest.mark.parametrize("name,kind", CASES, ids=["{}-{}".format(*c) for c in CASES])
def test_mistake(name, kind, tmp_path, monkeypatch):
    monkeypatch.delenv("FRCNN_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)  # a tool's default outputs (if any) stay here
    tool = TOOLS[name]
    argv, named, places = build_case(tool, kind, str(tmp_path))
    before = snapshot(places)
    code, stdout, stderr = run_in_process(name, tool, argv)
    assert code == EXIT_USER_ERROR, stderr[-3000:]
    assert "Traceback" not in stderr + stdout
    paragraph = error_paragraph(stderr)
    for value in named:
        assert value in paragraph, (value, paragraph)
    if kind in ("bad_type", "out_of_range"):
        assert "allowed" in paragraph, paragraph
    assert snapshot(places) == before


def test_every_tool_is_in_the_matrix():
    """A new tool under tools/ gets its line in TOOLS (the installers are not user tools)."""
    tools = {f[:-3] for f in os.listdir(os.path.join(REPO, "tools")) if f.endswith(".py")}
    assert tools - set(TOOLS) - {"build_detectron2_fallback"} == set()
    for name, tool in TOOLS.items():
        kinds = [k for k in KINDS if applies(tool, k)]
        assert kinds, name


# --- interrupts: real signals to a subprocess -----------------------------------------------

def _default_sigint():
    # a shell without job control starts background commands with SIGINT ignored (CI run as
    # `cmd &`), and Python then never raises KeyboardInterrupt: give the tool the terminal's
    # default, as a user's Ctrl-C finds it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _subprocess(tool, args, env):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "tools", tool + ".py"), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint)


def _stop(proc, sig):
    """Send ``sig``, wait for the end; the process is killed if it outlives the wait (a failing
    test leaves no training behind). Returns its stderr."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_for(path, proc, timeout=240):
    start = time.time()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if time.time() - start > timeout:
            proc.kill()
            proc.communicate()
            raise AssertionError("{} never appeared".format(path))
        time.sleep(0.2)


def _no_partial_files(folder):
    return [f for _, _, files in os.walk(folder) for f in files
            if ".tmp-" in f or ".partial-" in f]


@pytest.fixture(scope="module")
def signal_env(tmp_path_factory):
    from tests.test_reliability import subprocess_env, write_builtin_shapes

    env = subprocess_env(write_builtin_shapes(tmp_path_factory.mktemp("signal_data")))
    env.pop("FRCNN_DEBUG", None)
    return env


class TestInterrupts:
    def test_train_net_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(
            self, tmp_path, signal_env):
        out = str(tmp_path / "run")
        proc = _subprocess("train_net", [
            "--config", DEMO, *TINY_MODEL, "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER",
            "100000", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
            "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()", "OUTPUT_DIR", out],
            signal_env)
        _wait_for(os.path.join(out, "last_checkpoint"), proc)
        err = _stop(proc, signal.SIGINT)
        assert proc.returncode == EXIT_INTERRUPTED, err[-3000:]
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("interrupted (Ctrl-C): training stopped at iteration "), last
        with open(os.path.join(out, "last_checkpoint")) as f:
            kept = os.path.join(out, f.read().strip())
        assert "kept: {} (the last checkpoint)".format(kept) in last
        assert "continue with: python " in last and " --resume " in last
        assert os.path.isfile(kept)
        assert _no_partial_files(out) == []

    def test_predict_sigterm_keeps_complete_pictures_only(self, tmp_path, signal_env):
        inputs = tmp_path / "in"
        inputs.mkdir()
        for i in range(400):
            Image.fromarray(np.full((64, 64, 3), i % 255, dtype=np.uint8)).save(
                inputs / "{:03d}.png".format(i))
        out = str(tmp_path / "pred")
        proc = _subprocess("predict", [
            "--config-file", DEMO, "--weights", "", "--input", str(inputs), "--output", out,
            "--no-progress", *TINY_MODEL], signal_env)
        _wait_for(os.path.join(out, "000.png"), proc)
        err = _stop(proc, signal.SIGTERM)
        assert proc.returncode == EXIT_TERMINATED, err[-3000:]
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("terminated (SIGTERM): predicted "), last
        assert "not written: predictions.json, predictions.jsonl; redo with: " in last
        assert "--overwrite" in last
        assert not os.path.exists(os.path.join(out, "predictions.json"))
        assert not os.path.exists(os.path.join(out, "predictions.jsonl"))
        assert _no_partial_files(out) == []
        for name in os.listdir(out):  # every picture kept is complete
            with Image.open(os.path.join(out, name)) as picture:
                picture.load()


# --- the mechanism's parts, in process ------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("", "{f} is empty; allowed: a YAML mapping"),
    ("- a\n- b\n", "{f}, line 1: a YAML list, not a mapping of config keys"),
    ("SOLVER:\n  MAX_ITER: [1,\n", "{f}, line 3, column 1: not valid YAML"),
    ("_BASE_: Base-VGG16-FRCNN.yaml\n", "{f}, line 1: _BASE_ Base-VGG16-FRCNN.yaml not found "
                                        "(looked for {d}/Base-VGG16-FRCNN.yaml)"),
    ("_BASE_: {base}\nSOLVER:\n  MAX_ITR: 5\n", "Invalid config from {f}: Non-existent config "
                                               "key: SOLVER.MAX_ITR. Did you mean: "
                                               "SOLVER.MAX_ITER? (at {f}, line 3)"),
    ("_BASE_: {base}\nSOLVER:\n  MAX_ITER: abc\n", "Invalid config from {f}: Type mismatch"),
])
def test_yaml_config_errors_name_file_and_line(text, expected, tmp_path):
    from frcnn_plugin.cli import UserError, load_config

    path = tmp_path / "copied.yaml"
    path.write_text(text.format(base=os.path.join(CONFIGS, "Base-VGG16-FRCNN.yaml")))
    with pytest.raises(UserError) as info:
        load_config(str(path))
    assert expected.format(f=path, d=tmp_path) in str(info.value)
    if "Type mismatch" in expected:
        assert "allowed: an integer (as the default, " in str(info.value)
        assert str(info.value).endswith("(at {}, line 3)".format(path))


def test_lazy_overrides_keep_their_type_and_range():
    from frcnn_plugin.cli import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"train\.max_iter is an integer in the config .*not a "
                                          r"string \('abc'\); allowed: an integer"):
        load_config(LAZY_DEMO, ["train.max_iter=abc"], kind="python")
    with pytest.raises(ConfigError, match=r"train\.max_iter=-4 is invalid; allowed: an integer "
                                          r">= 1"):
        load_config(LAZY_DEMO, ["train.max_iter=-4"], kind="python")
    assert load_config(LAZY_DEMO, ["train.max_iter=7"], kind="python").train.max_iter == 7


def test_resumed_metrics_run_forward(tmp_path):
    from frcnn_plugin.analysis import load_metrics

    # iterations 19, 39, 59 logged; killed; resumed from the checkpoint after 39: 59 again
    lines = [{"iteration": 19, "loss_cls": 3.0}, {"iteration": 39, "loss_cls": 2.0},
             {"iteration": 59, "loss_cls": 1.5}, {"iteration": 59, "loss_cls": 1.0},
             {"iteration": 79, "loss_cls": 0.5}]
    path = tmp_path / "metrics.json"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert load_metrics(str(path))["loss_cls"] == [(19, 3.0), (39, 2.0), (59, 1.0), (79, 0.5)]


def test_unsafe_loading_advice_never_reaches_the_user(tmp_path):
    import pickle

    from frcnn_plugin.cli import CheckpointError
    from frcnn_plugin.engine import AtomicCheckpointer

    path = tmp_path / "pickled_object.pth"
    path.write_bytes(pickle.dumps(object))  # torch refuses it; its message advises unsafe load
    with pytest.raises(CheckpointError) as info:
        AtomicCheckpointer(torch.nn.Linear(1, 1)).load(str(path))
    assert "Cannot read checkpoint {}".format(path) in str(info.value)
    assert "weights_only" not in str(info.value)


def test_interrupt_is_one_line_with_the_note():
    from frcnn_plugin.cli import Terminated, interrupt_note

    def main(error):
        def run(argv):
            with interrupt_note("kept: a.png; redo with: python tools/x.py --overwrite"):
                raise error
        return run

    for error, code, head in ((KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
                              (Terminated(), EXIT_TERMINATED, "terminated (SIGTERM)")):
        err = io.StringIO()
        with redirect_stderr(err), pytest.raises(SystemExit) as info:
            run_cli(main(error), [])
        assert info.value.code == code
        assert err.getvalue() == head + ": kept: a.png; redo with: python tools/x.py " \
                                        "--overwrite\n"


def test_run_folder_guard_and_overwrite(tmp_path):
    from frcnn_plugin.cli import OutputExistsError
    from frcnn_plugin.engine.tool import start_run
    from frcnn_plugin.outputs import check_run_dir

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model_final.pth", "last_checkpoint", "metrics.json", "log.txt"):
        (run / name).write_text("old " + name)
    with pytest.raises(OutputExistsError, match="holds a finished run .*--resume.*--overwrite"):
        check_run_dir(str(run), "OUTPUT_DIR")
    assert check_run_dir(str(run), "OUTPUT_DIR", resume=True).startswith("a finished run")
    before = snapshot(str(run))
    with pytest.raises(RuntimeError):  # the new run fails to start: the old one is back
        with start_run(str(run), True, b"new config"):
            (run / "metrics.json").write_text("new")
            (run / "events.out.tfevents.1").write_text("new")
            raise RuntimeError("bad weights")
    assert snapshot(str(run)) == before
    with start_run(str(run), True, b"new config"):
        assert [n for n in os.listdir(run) if not n.startswith(".replaced-run-")] == [
            "log.txt"]  # the old run set aside
    assert sorted(os.listdir(run)) == ["config.yaml", "log.txt"]
    assert (run / "config.yaml").read_bytes() == b"new config"


@pytest.mark.usefixtures("tiny_shapes", "one_thread")
def test_predict_on_a_data_set_writes_its_ids_for_analyze_results(tmp_path, capsys):
    from detectron2.data import DatasetCatalog

    from frcnn_plugin.analysis import load_ground_truth, load_results

    records = DatasetCatalog.get("frcnn_test_val")
    out = tmp_path / "pred"
    run_cli(load_tool("predict").main, [
        "--config-file", DEMO, "--weights", "", "--input", *[r["file_name"] for r in records],
        "--output", str(out), "--dataset", "frcnn_test_val", "--score-thresh", "0",
        "--no-progress", *TINY_MODEL, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [(x["image_id"], x["file"]) for x in lines] == [
        (r["image_id"], r["file_name"]) for r in records]
    results = load_results(str(out / "predictions.json"),
                           load_ground_truth("frcnn_test_val", str(tmp_path)))
    assert {r["image_id"] for r in results} <= {r["image_id"] for r in records}
