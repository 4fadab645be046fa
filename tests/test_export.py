"""tools/export_model.py and tools/predict.py --backend on the tiny model (random weights with a
fixed seed, a spread-out box predictor so that scores differ): TorchScript and ONNX files give
the eager model's detections within BOX_TOL px and SCORE_TOL, on the traced image and on an
image of another size; the user's mistakes end with one error line."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

from frcnn_plugin.cli import CheckpointError, ConfigError, OutputExistsError
from tests import own_data
from tests.conftest import CONFIGS, TINY_MODEL, load_config, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
OPTS = ["SEED", "0", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05", *TINY_MODEL]
# What the tests require (the tool's own check allows 1e-2 px and 1e-4); measured on this
# model: 0 (TorchScript) and below 1e-5 px, 1e-7 (ONNX).
BOX_TOL, SCORE_TOL = 1e-3, 1e-5


def _has_onnxruntime():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


needs_onnxruntime = pytest.mark.skipif(
    not _has_onnxruntime(), reason="onnx/onnxruntime not installed: the ONNX export is not "
    "checked (pip install frcnn_plugin[export])")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint of the tiny demo model and two images: 64x64 (traced) and 80x60 (resized
    to 64x48 by the test-time resize: another input size)."""
    from frcnn_plugin.inspection.cli import build_inspection_model, setup_cfg

    root = tmp_path_factory.mktemp("export")
    cfg = setup_cfg(DEMO, OPTS)
    model, _ = build_inspection_model(cfg, "")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.roi_heads.box_predictor.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    weights = str(root / "model.pth")
    torch.save({"model": model.state_dict()}, weights)
    images = root / "images"
    images.mkdir()
    own_data.draw(own_data.OBJECTS[1], seed=3).save(str(images / "a.png"))
    own_data.draw(own_data.OBJECTS[3], seed=4).resize((80, 60)).save(str(images / "b.png"))
    return root, weights, [str(images / "a.png"), str(images / "b.png")]


def export(setup, fmt, output, *flags):
    root, weights, images = setup
    tool = load_tool("export_model")
    return tool.main(["--config-file", DEMO, "--sample-image", *images, "--weights", weights,
                      "--format", fmt, "--output", str(output), *flags, *OPTS])


def eager_reference(weights, paths):
    """The eager model's detections, computed here: ResizeShortestEdge, forward, in
    original-image pixels."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import transforms as T
    from detectron2.data.detection_utils import read_image
    from detectron2.modeling import build_model

    cfg = load_config(DEMO, *OPTS)
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(weights)
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    outputs = []
    for path in paths:
        image = read_image(path, format=cfg.INPUT.FORMAT)
        resized = resize.get_transform(image).apply_image(image)
        x = torch.as_tensor(resized.transpose(2, 0, 1).astype("float32"))
        with torch.no_grad():
            out = model([{"image": x, "height": image.shape[0], "width": image.shape[1]}])
        outputs.append(out[0]["instances"])
    return outputs


def check_file(setup, fmt, path):
    from detectron2.data.detection_utils import read_image

    from frcnn_plugin.export import load_exported
    from frcnn_plugin.predict import BatchPredictor

    _, weights, images = setup
    cfg = load_config(DEMO, *OPTS)
    exported = load_exported(str(path), fmt)
    assert exported.metadata["inputs"] == ["height", "image", "width"]
    predictor = BatchPredictor(cfg, exported)
    results = predictor([read_image(p, format="RGB") for p in images])
    for found, expected in zip(results, eager_reference(weights, images)):
        assert len(expected) > 5 and len(found) == len(expected)
        np.testing.assert_allclose(found.pred_boxes.tensor.numpy(),
                                   expected.pred_boxes.tensor.numpy(), rtol=0, atol=BOX_TOL)
        np.testing.assert_allclose(found.scores.numpy(), expected.scores.numpy(), rtol=0,
                                   atol=SCORE_TOL)
        assert found.pred_classes.tolist() == expected.pred_classes.tolist()
    return results


@pytest.fixture(scope="module")
def exported(setup):
    """fmt -> the report of its export (made once for the module)."""
    reports = {}

    def get(fmt):
        if fmt not in reports:
            reports[fmt] = export(setup, fmt, setup[0] / fmt)
        return reports[fmt]

    return get


def test_torchscript_equals_eager(setup, exported, capsys, one_thread):
    report = exported("torchscript")
    assert report.written and report.path == str(setup[0] / "torchscript" / "model.ts")
    out = capsys.readouterr().out
    assert "boxes max|diff|" in out and "Wrote {}".format(report.path) in out
    assert [r.eager for r in report.rows] == [r.exported for r in report.rows]
    check_file(setup, "torchscript", report.path)


@needs_onnxruntime
def test_onnx_equals_eager(setup, exported, one_thread):
    report = exported("onnx")
    assert report.metadata["onnx_opset"] == 17
    check_file(setup, "onnx", report.path)


def _predict(setup, backend, weights, out):
    root, _, images = setup
    tool = load_tool("predict")
    tool.main(["--config-file", DEMO, "--backend", backend, "--weights", str(weights),
               "--input", *images, "--output", str(out), "--score-thresh", "0.05", *OPTS])
    with open(str(out / "predictions.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("backend", ["torchscript", pytest.param("onnx", marks=needs_onnxruntime)])
def test_predict_backend(setup, exported, backend, one_thread):
    root, weights, _ = setup
    report = exported(backend)
    eager = _predict(setup, "eager", weights, root / ("eager_" + backend))
    exported = _predict(setup, backend, report.path, root / ("out_" + backend))
    assert len(exported) == len(eager) > 0
    for a, b in zip(eager, exported):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], rtol=0, atol=BOX_TOL)
        np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=SCORE_TOL)


def _error(tool_name, argv, capsys):
    tool = load_tool(tool_name)
    with pytest.raises(SystemExit) as exit_info:
        tool.run_cli(tool.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")
             or ": error: " in line]  # the tool's, or argparse's "prog: error: ..."
    assert len(lines) == 1, err
    return lines[0]


def test_user_errors(setup, tmp_path, capsys):
    _, weights, images = setup
    base = ["--config-file", DEMO, "--sample-image", images[0], "--output",
            str(tmp_path / "out")]
    # bad flag (argparse): the allowed values are named
    line = _error("export_model", base + ["--format", "caffe2"], capsys)
    assert "invalid choice: 'caffe2'" in line and "'torchscript', 'onnx'" in line
    missing = str(tmp_path / "none.pth")
    line = _error("export_model", base + ["--weights", missing], capsys)
    assert line == "error: Checkpoint not found: {}".format(missing) or missing in line
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    line = _error("export_model", base + ["--weights", str(corrupt)], capsys)
    assert str(corrupt) in line and "corrupt" in line
    line = _error("export_model", base + ["--weights", weights, "MODEL.ROI_HEADS.NO_SUCH", "1"],
                  capsys)
    assert "MODEL.ROI_HEADS.NO_SUCH" in line
    line = _error("export_model", base + ["--weights", weights, "--export-method", "scripting"],
                  capsys)
    assert "--export-method scripting is not supported" in line and "allowed: --export-method " \
        "tracing" in line
    line = _error("export_model", base + ["--weights", weights, "MODEL.ROI_HEADS.SOFT_NMS.METHOD",
                                          "linear"], capsys)
    assert "SOFT_NMS.METHOD='linear' cannot be exported" in line
    line = _error("export_model", ["--config-file", DEMO, "--sample-image",
                                   str(tmp_path / "nope.png"), "--weights", weights,
                                   "--output", str(tmp_path / "out")], capsys)
    assert "--sample-image {}: not found".format(tmp_path / "nope.png") in line
    # predict: an exported backend needs the file, and the file must be of that format
    line = _error("predict", ["--config-file", DEMO, "--backend", "onnx", "--input", images[0],
                              "--output", str(tmp_path / "p")], capsys)
    assert "--backend onnx runs an exported file: give it as --weights FILE" in line
    line = _error("predict", ["--config-file", DEMO, "--backend", "torchscript", "--weights",
                              weights, "--input", images[0], "--output", str(tmp_path / "p")],
                  capsys)
    assert "Cannot read {} as TorchScript".format(weights) in line


def test_existing_output_and_other_config(setup, exported, tmp_path):
    from frcnn_plugin.export import check_metadata, load_exported
    from frcnn_plugin.export.exporter import quiet_deprecations

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.ts").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match=r"model.ts exists already; allowed: "
                       r"--overwrite"):
        export(setup, "torchscript", out)  # refused before any work
    assert (out / "model.ts").read_bytes() == b"old"
    report = exported("torchscript")
    cfg = load_config(DEMO, *OPTS, "INPUT.MIN_SIZE_TEST", "96")
    with pytest.raises(ConfigError, match=r"INPUT.MIN_SIZE_TEST=96 \(the file: 64\)"):
        check_metadata(load_exported(report.path, "torchscript"), cfg)
    with warnings.catch_warnings():
        quiet_deprecations()
        traced = torch.jit.trace(torch.nn.Identity(), torch.zeros(1))
        traced.save(str(tmp_path / "other.ts"))  # a TorchScript file of another tool
    with pytest.raises(CheckpointError, match="has no frcnn_plugin export metadata"):
        load_exported(str(tmp_path / "other.ts"), "torchscript")


@pytest.mark.usefixtures("tiny_shapes")
def test_benchmark_times_backends(tmp_path, one_thread):
    """tools/benchmark.py --task inference --backend: one row per backend, ratios plugin /
    backend; nothing here asserts a timing."""
    backends = "eager,torchscript" + (",onnx" if _has_onnxruntime() else "")
    out = str(tmp_path / "bench.json")
    results = load_tool("benchmark").main([
        "--config-file", DEMO, "--task", "inference", "--backend", backends, "--peers", "none",
        "--iters", "2", "--warmup", "1", "--repeats", "1", "--num-images", "2", "--no-isolate",
        "--json", out, *OPTS, "DATASETS.TEST", "('frcnn_test_val',)"])
    kinds = ["plugin"] + ["plugin-" + b for b in backends.split(",")[1:]]
    assert list(results["models"]) == kinds and list(results["ratios"]) == kinds[1:]
    for kind in kinds[1:]:
        model = results["models"][kind]
        assert model["model"]["backend"] == kind.split("-")[1]
        assert model["latency_s"]["median"] > 0 and model["detections_per_image"] > 0
        assert model["breakdown"]["mean_s"]["outside_fraction"] is None
    with pytest.raises(Exception, match="allowed with --task inference"):
        load_tool("benchmark").main(["--config-file", DEMO, "--task", "train", "--backend",
                                     "onnx", *OPTS])


PAPER_AND_SWAPS = {
    # the paper's minimum proposal size (16 px of the original image: a traced input, not a
    # constant), few proposals (the RPN's NMS shortcut is off when traced), RoIAlign
    "paper_min_size_roi_align": [
        "MODEL.PROPOSAL_GENERATOR.MIN_SIZE", "16", "MODEL.RPN.POST_NMS_TOPK_TEST", "10",
        "MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2"],
    # detectron2's RPN, StandardROIHeads and its proposal order (vgg16_frcnn_d2_heads.yaml)
    "d2_heads": [
        "MODEL.META_ARCHITECTURE", "GeneralizedRCNN", "MODEL.PROPOSAL_GENERATOR.NAME", "RPN",
        "MODEL.RPN.HEAD_NAME", "StandardRPNHead", "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
        "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", "paper"],  # StandardROIHeads' own
}


@pytest.mark.parametrize("swap", sorted(PAPER_AND_SWAPS))
def test_paper_settings_and_swaps(swap, tmp_path, one_thread):
    """The API on the paper's settings and a swap config, with images whose original size
    differs (64x64, 160x120, 50x90): per image the eager and exported detections agree."""
    from frcnn_plugin.export import export_model
    from frcnn_plugin.inspection.cli import build_inspection_model, setup_cfg

    fmt = "onnx" if _has_onnxruntime() else "torchscript"
    cfg = setup_cfg(DEMO, OPTS + PAPER_AND_SWAPS[swap])
    model, _ = build_inspection_model(cfg, "")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.roi_heads.box_predictor.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    samples = [(str(size), np.asarray(own_data.draw(own_data.OBJECTS[i], seed=i).resize(size)))
               for i, size in enumerate([(64, 64), (160, 120), (50, 90)])]
    report = export_model(cfg, model, samples, "tracing", fmt, str(tmp_path / "m"),
                          box_atol=BOX_TOL, score_atol=SCORE_TOL)
    assert report.written, report.table
    assert all(r.eager == r.exported > 0 for r in report.rows), report.table


def test_onnx_without_onnxruntime(monkeypatch, tmp_path):
    """Without onnxruntime, --format onnx and --backend onnx stop with an error saying so."""
    import sys

    from frcnn_plugin.export import check_exportable, load_exported

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    cfg = load_config(DEMO)
    with pytest.raises(ConfigError, match=r"--format onnx needs onnxruntime.*allowed: pip "
                       r"install onnx onnxruntime"):
        check_exportable(cfg, "tracing", "onnx")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ConfigError, match="--backend onnx needs onnxruntime"):
        load_exported(str(tmp_path / "model.onnx"), "onnx")


def test_default_sample_is_the_first_test_image(tmp_path, one_thread):
    """Without --sample-image: the first image of DATASETS.TEST[0] (an own COCO data set)."""
    json_file, image_root = own_data.write_coco(str(tmp_path / "coco"))
    name = "export_coco_" + tmp_path.name
    config = own_data.write_config(
        tmp_path / "cfg.yaml", DEMO,
        [{"NAME": name, "FORMAT": "coco", "JSON_FILE": json_file, "IMAGE_ROOT": image_root}],
        train=[name], test=[name])
    report = load_tool("export_model").main([
        "--config-file", config, "--weights", "", "--output", str(tmp_path / "out"), *OPTS,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    assert [r.name for r in report.rows] == [os.path.join(image_root, "img0.png")]
    assert report.written and report.rows[0].ok()


def test_fallback_build_makes_caffe2_optional(tmp_path):
    """tools/build_detectron2_fallback.py's one source change: v0.6's export/__init__.py
    imports its Caffe2 exporter only where Caffe2 is importable (as upstream main)."""
    tool = load_tool("build_detectron2_fallback")
    v06 = ("# -*- coding: utf-8 -*-\n\nfrom .api import *\nfrom .flatten import TracingAdapter\n"
           "from .torchscript import scripting_with_instances, dump_torchscript_IR\n")
    init = tmp_path / "__init__.py"
    init.write_text(v06)
    tool.patch_export_init(str(init))
    patched = init.read_text()
    assert "from .api import *\n" not in patched.replace("    from .api import *\n", "")
    assert "except ImportError:\n    pass\nelse:\n    from .api import *\n" in patched
    assert patched.endswith("from .flatten import TracingAdapter\nfrom .torchscript import "
                            "scripting_with_instances, dump_torchscript_IR\n")
    compile(patched, str(init), "exec")
    tool.patch_export_init(str(init))  # upstream's file (or a second run): unchanged
    assert init.read_text() == patched


def test_failed_check_writes_nothing(setup, tmp_path, one_thread):
    """A check that fails (here: negative tolerances, which no difference meets) names the
    tolerances, holds the table and writes no file; --keep-on-mismatch writes it."""
    from detectron2.data.detection_utils import read_image

    from frcnn_plugin.export import ExportCheckError, export_model
    from frcnn_plugin.inspection.cli import build_inspection_model, setup_cfg

    cfg = setup_cfg(DEMO, OPTS)
    model, _ = build_inspection_model(cfg, setup[1])
    samples = [(setup[2][0], read_image(setup[2][0], format="RGB"))]
    path = str(tmp_path / "model.ts")
    with pytest.raises(ExportCheckError, match=r"^The exported model differs from the eager "
                       r"model beyond the tolerances \(boxes -1 px, scores -1\); .*model.ts not "
                       r"written:\nimage .*boxes max\|diff\|"):
        export_model(cfg, model, samples, "tracing", "torchscript", path, -1, -1)
    assert not list(tmp_path.iterdir())
    report = export_model(cfg, model, samples, "tracing", "torchscript", path, -1, -1,
                          keep_on_mismatch=True)
    assert report.written and os.path.isfile(path) and not report.rows[0].ok(-1, -1)


@needs_onnxruntime
@pytest.mark.usefixtures("tiny_shapes")
def test_int8_twin(setup, tmp_path, capsys, one_thread):
    """--int8-calibration N: model.onnx checked as always, plus model_int8.onnx whose Conv and
    Gemm weights are int8 (QDQ), calibrated on N training images, with the export metadata;
    predict --backend onnx runs it."""
    import onnx

    root, _, images = setup
    out = tmp_path / "out"
    report = export(setup, "onnx", out, "--int8-calibration", "3",
                    "DATASETS.TRAIN", "('frcnn_test_train',)")
    assert report.written and all(r.ok() for r in report.rows)  # the fp32 file's check
    printed = capsys.readouterr().out
    assert "Wrote {}".format(out / "model_int8.onnx") in printed
    assert "calibrated on 3 image(s) of frcnn_test_train" in printed
    assert "matched (same class, IoU >= 0.5)" in printed
    proto = onnx.load(str(out / "model_int8.onnx"))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    int8_weights = [t for t in proto.graph.initializer  # (zero points: 1-D int8 tensors)
                    if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]
    # VGG11 has 8 convolutions, the RPN 3 (conv, objectness, deltas), the box head fc6, fc7,
    # and the predictor 2 (classes, boxes): 15 int8 weight tensors
    assert len(int8_weights) == 15
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["frcnn_export"])
    assert meta["quantization"]["calibration_images"] == 3
    assert meta["quantization"]["op_types"] == ["Conv", "Gemm"]
    assert meta["inputs"] == ["height", "image", "width"]  # the export's metadata kept
    predictions = _predict(setup, "onnx", out / "model_int8.onnx", tmp_path / "pred")
    assert {p["image_id"] for p in predictions} <= {0, 1}  # ran on both images
    # an existing int8 file is refused before any work; int8 is for ONNX only
    (out / "model.onnx").unlink()
    with pytest.raises(OutputExistsError, match="model_int8.onnx exists already"):
        export(setup, "onnx", out, "--int8-calibration", "3")
    assert not (out / "model.onnx").exists()
    line = _error("export_model", ["--config-file", DEMO, "--sample-image", images[0],
                                   "--output", str(tmp_path / "ts"), "--format", "torchscript",
                                   "--int8-calibration", "3"], capsys)
    assert "--int8-calibration quantizes an ONNX model; allowed with --format onnx" in line
    line = _error("export_model", ["--config-file", DEMO, "--sample-image", images[0],
                                   "--output", str(tmp_path / "neg"), "--format", "onnx",
                                   "--int8-calibration", "-2"], capsys)
    assert "argument --int8-calibration: '-2': allowed: an integer >= 1" in line
    line = _error("export_model", ["--config-file", DEMO, "--sample-image", images[0],
                                   "--output", str(tmp_path / "zero"), "--format", "onnx",
                                   "--int8-calibration", "0"], capsys)  # was: silently no int8
    assert "argument --int8-calibration: '0': allowed: an integer >= 1" in line


def test_int8_comparison_by_hand():
    """compare_int8: confident detections (score >= 0.5) paired by class and IoU >= 0.5."""
    from detectron2.structures import Boxes, Instances

    from frcnn_plugin.export.run import compare_int8

    def inst(boxes, scores, classes):
        i = Instances((100, 100))
        i.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        i.scores = torch.tensor(scores)
        i.pred_classes = torch.tensor(classes)
        return i

    eager = inst([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60], [0, 0, 10, 10]],
                 [0.9, 0.8, 0.7, 0.3], [0, 1, 2, 0])
    # box 1 shifted by 2 px in x: IoU 18*20 / (22*20) = 9/11; box 2 with another class; one
    # extra confident detection
    int8 = inst([[0, 0, 10, 10], [22, 20, 42, 40], [50, 50, 60, 60], [70, 70, 80, 80]],
                [0.95, 0.6, 0.7, 0.55], [0, 1, 1, 2])
    r = compare_int8("x", eager, int8)
    assert (r.eager, r.int8, r.matched) == (3, 4, 2)
    assert r.mean_iou == pytest.approx((1 + 9 / 11) / 2)
    empty = compare_int8("e", eager[eager.scores < 0], int8)
    assert (empty.eager, empty.matched, empty.mean_iou) == (0, 0, None)
