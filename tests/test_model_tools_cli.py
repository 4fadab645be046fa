"""The model tools (analyze_model, browse_dataset, print_config, test_robustness) used with a
mistake: one ``error:`` paragraph naming the bad value, exit status 2, no traceback, nothing
written. In-process through run_cli, as the tools' ``__main__`` runs them."""
import io
import os
from contextlib import redirect_stderr, redirect_stdout

import pytest

from frcnn_plugin.cli import run_cli
from tests.conftest import CONFIGS, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
DEMO_PY = os.path.join(CONFIGS, "lazy", "vgg16_frcnn_shapes_demo.py")


def user_error(tool, argv):
    """(exit status, the error paragraph) of ``tools/<tool>.py argv``."""
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as e:
        run_cli(load_tool(tool).main, argv)
    text = err.getvalue()
    assert "Traceback" not in text
    paragraph = text[text.index("error: "):] if "error: " in text else text
    assert text.count("error: ") == 1 and "\n\n" not in paragraph.strip(), text
    return e.value.code, paragraph


CASES = {
    "analyze_model_missing_checkpoint": (
        "analyze_model", ["--config-file", DEMO, "--weights", "nope.pth", "--image-size",
                          "64x64"], ["nope.pth"]),
    "analyze_model_bad_size": (
        "analyze_model", ["--config-file", DEMO, "--image-size", "0x64"], ["0x64", "HxW"]),
    "analyze_model_unregistered_dataset": (
        "analyze_model", ["--config-file", DEMO, "--weights", "", "--dataset", "frcnn_shapes_vall"],
        ["frcnn_shapes_vall", "frcnn_shapes_val"]),
    "browse_unregistered_dataset": (
        "browse_dataset", ["--config-file", DEMO, "--dataset", "nope_set", "--output-dir",
                           "{tmp}/out"], ["nope_set"]),
    "browse_dataloader_unregistered_dataset": (
        "browse_dataset", ["--config-file", DEMO_PY, "--source", "dataloader", "--dataset",
                           "nope_set", "--output-dir", "{tmp}/out"], ["nope_set"]),
    "browse_bad_count": (
        "browse_dataset", ["--config-file", DEMO, "-n", "0", "--output-dir", "{tmp}/out"],
        ["'0'", "an integer in [1, 100000]"]),
    "print_config_missing_config": (
        "print_config", ["--config-file", "nope.yaml", "--output", "{tmp}/out"], ["nope.yaml"]),
    "print_config_bad_override": (
        "print_config", ["--config-file", DEMO_PY, "--output", "{tmp}/out", "train.max_itr=3"],
        ["train.max_itr", "train.max_iter"]),
    "robustness_missing_checkpoint": (
        "test_robustness", ["--config-file", DEMO, "--weights", "nope.pth", "--output-dir",
                            "{tmp}/out", "-n", "1"], ["nope.pth"]),
    "robustness_no_checkpoint": (
        "test_robustness", ["--config-file", DEMO, "--output-dir", "{tmp}/out"],
        ["MODEL.WEIGHTS", "--weights"]),
    "robustness_unknown_corruption": (
        "test_robustness", ["--config-file", DEMO, "--weights", "", "--output-dir", "{tmp}/out",
                            "--corruptions", "gaussian_nois"], ["gaussian_nois", "gaussian_noise"]),
    "robustness_bad_severity": (
        "test_robustness", ["--config-file", DEMO, "--weights", "", "--output-dir", "{tmp}/out",
                            "--severities", "6"], ["'6'", "an integer in [1, 5]"]),
    "robustness_unregistered_dataset": (
        "test_robustness", ["--config-file", DEMO_PY, "--weights", "", "--output-dir",
                            "{tmp}/out", "--dataset", "nope_set"], ["nope_set"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_mistake_is_one_error_paragraph(case, tmp_path):
    tool, argv, named = CASES[case]
    code, paragraph = user_error(tool, [a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    for value in named:
        assert value in paragraph, paragraph
    assert not os.path.exists(tmp_path / "out")  # nothing written


def test_robustness_refuses_a_non_empty_output_dir(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "robustness.json").write_text("precious")
    code, paragraph = user_error("test_robustness", [
        "--config-file", DEMO, "--weights", "", "--output-dir", str(tmp_path / "out")])
    assert code == 2 and "--overwrite" in paragraph
    assert (tmp_path / "out" / "robustness.json").read_text() == "precious"


def test_browse_contact_sheet_where_a_folder_is(tmp_path):
    (tmp_path / "sheet.png").mkdir()
    code, paragraph = user_error("browse_dataset", [
        "--config-file", DEMO, "--contact-sheet", str(tmp_path / "sheet.png")])
    assert code == 2 and "is a folder" in paragraph and str(tmp_path / "sheet.png") in paragraph
    assert os.listdir(tmp_path / "sheet.png") == []


def test_browse_keeps_an_earlier_run_and_other_files(tmp_path):
    out = tmp_path / "pictures"
    out.mkdir()
    (out / "00000_a.png").write_bytes(b"earlier")
    code, paragraph = user_error("browse_dataset", [
        "--config-file", DEMO, "--output-dir", str(out)])
    assert code == 2 and "00000_a.png" in paragraph and "--overwrite" in paragraph
    assert (out / "00000_a.png").read_bytes() == b"earlier"
