"""tools/predict.py with the tiny untrained model: a folder of images with a corrupt file, the
overwrite refusal, a video, missing weights."""
import json
import os

import numpy as np
import pytest

from frcnn_plugin.cli import CheckpointError, MissingFileError, OutputExistsError
from tests import own_data
from tests.conftest import CONFIGS, TINY_MODEL, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")


@pytest.fixture
def setup(tmp_path):
    """A config whose DATASETS.TEST is a COCO data set with category ids 5 and 9 ("cat",
    "dog"), and a folder with 3 images and one corrupt .png."""
    json_file, image_root = own_data.write_coco(str(tmp_path / "coco"))
    name = "predict_coco_" + tmp_path.name
    config = own_data.write_config(
        tmp_path / "cfg.yaml", DEMO,
        [{"NAME": name, "FORMAT": "coco", "JSON_FILE": json_file, "IMAGE_ROOT": image_root}],
        train=[name], test=[name])
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        own_data.draw(own_data.OBJECTS[i], seed=10 + i).save(str(folder / "p{}.png".format(i)))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    (folder / "notes.txt").write_text("not an image, ignored")
    return config, folder, tmp_path / "out"


def predict(config, inputs, out, *flags):
    tool = load_tool("predict")
    argv = ["--config-file", config, "--weights", "", "--input", *inputs, "--output", str(out),
            "--score-thresh", "0.0", *flags, "SEED", "0", *TINY_MODEL]
    return tool.main(argv)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_folder_with_a_corrupt_image(setup, capsys, one_thread):
    config, folder, out = setup
    summary = predict(config, [str(folder)], out, "--batch-size", "2")

    captured = capsys.readouterr()
    broken = str(folder / "broken.png")
    assert "warning: skipped {}: not an image file".format(broken) in captured.err
    assert "Skipped 1 unreadable file(s): {}".format(broken) in captured.out
    assert summary.images == 3 and summary.skipped[0][0] == broken
    # the input order: broken.png, p0.png, p1.png, p2.png (sorted); ids are positions in it
    for i in range(3):
        assert (out / "p{}.png".format(i)).is_file()
    assert not (out / "broken.png").exists()
    with open(str(out / "predictions.json")) as f:
        results = json.load(f)
    assert {r["image_id"] for r in results} == {1, 2, 3}
    assert {r["category_id"] for r in results} <= {5, 9}  # the data set's own ids
    assert all(len(r["bbox"]) == 4 and 0 <= r["score"] <= 1 for r in results)
    lines = read_jsonl(str(out / "predictions.jsonl"))
    assert [line["file"] for line in lines] == [str(folder / "p{}.png".format(i))
                                                for i in range(3)]
    assert all(line["width"] == 64 and line["height"] == 64 for line in lines)
    assert sum(len(line["detections"]) for line in lines) == len(results) > 0
    assert {d["class"] for line in lines for d in line["detections"]} <= {"cat", "dog"}

    # batches of 1: the same detections (the model's own forward, one image per call)
    again = predict(config, [str(folder / "p*.png")], out.parent / "out1", "--batch-size", "1")
    with open(str(out.parent / "out1" / "predictions.json")) as f:
        single = json.load(f)
    assert again.images == 3 and not again.skipped
    assert len(single) == len(results)
    ids = {1: 0, 2: 1, 3: 2}  # the glob has no broken.png: ids from 0
    for a, b in zip(results, single):
        assert ids[a["image_id"]] == b["image_id"] and a["category_id"] == b["category_id"]
        np.testing.assert_allclose(a["bbox"] + [a["score"]], b["bbox"] + [b["score"]],
                                   rtol=1e-4, atol=1e-3)


def test_refuses_to_overwrite_before_any_work(setup):
    config, folder, out = setup
    image = str(folder / "p0.png")
    predict(config, [image], out)
    written = out / "p0.png"
    before = written.stat().st_mtime_ns
    tool = load_tool("predict")
    argv = ["--config-file", config, "--weights", str(out / "no_such.pth"), "--input", image,
            "--output", str(out)]
    # the outputs are checked before the weights are read: the error is about them
    with pytest.raises(OutputExistsError, match=r"3 output file\(s\) exist already: {}, .*"
                       r"predictions.json, .*predictions.jsonl; allowed: --overwrite".format(
                           written)):
        tool.main(argv)
    assert written.stat().st_mtime_ns == before
    with pytest.raises(MissingFileError, match="no_such.pth"):  # with --overwrite: the weights
        tool.main(argv + ["--overwrite"])


def test_video_gets_an_annotated_video(tmp_path, setup, one_thread):
    import cv2

    config, _, out = setup
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 64))
    for i in range(5):
        frame = np.asarray(own_data.draw(own_data.OBJECTS[i % 4], seed=i))[:, :, ::-1]
        writer.write(np.ascontiguousarray(frame))
    writer.release()

    summary = predict(config, [video], out, "--batch-size", "2")
    assert summary.frames == 5 and summary.videos == 1

    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 5 and frames[0].shape == (64, 64, 3)
    lines = read_jsonl(str(out / "predictions.jsonl"))
    assert [(line["image_id"], line["frame"], line["file"]) for line in lines] == [
        (i, i, video) for i in range(5)]


def test_weights_missing_or_unset(setup, capsys):
    config, folder, out = setup
    tool = load_tool("predict")
    with pytest.raises(SystemExit) as exit_info:
        tool.run_cli(tool.main, ["--config-file", config, "--weights", str(out / "none.pth"),
                                 "--input", str(folder), "--output", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: Checkpoint not found: {}".format(out / "none.pth") in err
    assert "Traceback" not in err
    with pytest.raises(CheckpointError, match=r"No weights: MODEL.WEIGHTS is empty"):
        tool.main(["--config-file", config, "--input", str(folder), "--output", str(out)])
    with pytest.raises(MissingFileError, match=r"--input .*nothing\*\.png: the pattern matches"):
        tool.main(["--config-file", config, "--input", str(folder / "nothing*.png"),
                   "--output", str(out)])


def test_python_config_gives_the_yaml_twin_predictions(tmp_path, tiny_shapes, one_thread):
    """The YAML demo and its Python twin, made tiny the same way and seeded the same: the
    same detections, class names from each config's test data set."""
    from tests.test_lazy import LAZY, TINY_LAZY

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        own_data.draw(own_data.OBJECTS[i], seed=20 + i).save(str(folder / "p{}.png".format(i)))
    tool = load_tool("predict")
    common = ["--weights", "", "--input", str(folder), "--score-thresh", "0.0"]
    tool.main(["--config-file", DEMO, "--output", str(tmp_path / "yaml"), *common, "SEED", "0",
               "DATASETS.TEST", "('frcnn_test_val',)", *TINY_MODEL])
    tool.main(["--config-file", os.path.join(LAZY, "vgg16_frcnn_shapes_demo.py"),
               "--output", str(tmp_path / "lazy"), *common, "train.seed=0",
               "dataloader.test.dataset.names=frcnn_test_val",
               "dataloader.test.mapper.augmentations.0.short_edge_length=64",
               "dataloader.test.mapper.augmentations.0.max_size=64",
               *[o for o in TINY_LAZY if ".sampler." not in o and "score_thresh" not in o]])
    a = read_jsonl(str(tmp_path / "yaml" / "predictions.jsonl"))
    b = read_jsonl(str(tmp_path / "lazy" / "predictions.jsonl"))
    assert [r["file"] for r in a] == [r["file"] for r in b]
    dets_a = [d for r in a for d in r["detections"]]
    dets_b = [d for r in b for d in r["detections"]]
    assert dets_a, "the untrained tiny model detects something at score >= 0"
    assert [(d["class"], d["category_id"]) for d in dets_a] == \
        [(d["class"], d["category_id"]) for d in dets_b]
    np.testing.assert_allclose([d["bbox"] + [d["score"]] for d in dets_a],
                               [d["bbox"] + [d["score"]] for d in dets_b], atol=1e-4)
    assert {d["class"] for d in dets_a} <= {"square", "circle", "triangle"}
    assert (tmp_path / "lazy" / "p0.png").is_file()
