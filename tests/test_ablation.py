"""The accuracy ablation (tools/ablate_accuracy.py): its plan, its statistics, and one tiny run
end to end with resuming. Nothing here asserts an accuracy or a timing."""
import json
import os
import unittest

import pytest

from tests.conftest import CONFIGS, load_config, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
TINY = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "MODEL.VGG.DEPTH", "11", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "DATASETS.TRAIN", "('frcnn_test_train',)",
    "DATASETS.TEST", "('frcnn_test_val',)",
]  # fmt: skip


def fake(row, seed, ap50, time_s=10.0):
    return {"row": row, "seed": seed, "bbox": {"AP": ap50 / 2, "AP50": ap50, "AP75": 0.0},
            "train_time_s": time_s}


class TestStatistics(unittest.TestCase):
    def test_mean_and_sample_std_by_hand(self):
        from benchmarks.ablation import format_table, summarize

        results = {
            "a": fake("plugin", 0, 40.0, 9.0), "b": fake("plugin", 1, 50.0, 10.0),
            "c": fake("plugin", 2, 60.0, 11.0),
            "d": fake("torchvision (own init)", 0, 45.0),
            "e": fake("torchvision (own init)", 1, 45.0),
        }  # fmt: skip
        summary = summarize(results)
        self.assertEqual([e["row"] for e in summary], ["plugin", "torchvision (own init)"])
        # AP50 40, 50, 60: mean 50, sample std sqrt((100 + 0 + 100) / 2) = 10
        self.assertEqual(summary[0]["AP50"], (50.0, 10.0))
        self.assertEqual(summary[0]["AP"], (25.0, 5.0))
        self.assertEqual(summary[0]["seeds"], [0, 1, 2])
        self.assertEqual(summary[1]["AP50"], (45.0, 0.0))
        table = format_table(summary).splitlines()
        self.assertEqual(table[0], "| run | seeds | AP | AP50 | AP75 | Δ AP50 | train s |")
        self.assertEqual(table[2], "| plugin | 3 | 25.0 ± 5.0 | 50.0 ± 10.0 | 0.0 ± 0.0 | – "
                                   "| 10 ± 1 |")
        self.assertIn("| 45.0 ± 0.0 | 0.0 ± 0.0 | -5.0 |", table[3])
        # a folder without the plugin row (--skip-plugin) has no difference to give
        alone = format_table(summarize({"d": results["d"]})).splitlines()
        self.assertIn("| 45.0 ± 0.0 | 0.0 ± 0.0 | – |", alone[2])


class TestPlan(unittest.TestCase):
    def test_switches_already_in_the_config_are_skipped(self):
        from benchmarks.ablation import plan_runs

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", "MODEL.ROI_BOX_HEAD.POOLER_TYPE",
                          "ROIAlignV2")
        runs = plan_runs(cfg, ["roialign", "rpn_sigmoid_head"], ["torchvision (own init)"], [0, 1])
        self.assertEqual(
            [(r["row"], r["seed"]) for r in runs],
            [("plugin", 0), ("plugin", 1), ("plugin + rpn_sigmoid_head", 0),
             ("plugin + rpn_sigmoid_head", 1), ("torchvision (own init)", 0),
             ("torchvision (own init)", 1)],
        )
        self.assertEqual(runs[2]["overrides"], {"MODEL.RPN.HEAD_NAME": "StandardRPNHead"})
        self.assertEqual((runs[4]["kind"], runs[4]["init"]), ("torchvision", "own"))
        with self.assertRaisesRegex(ValueError, "switch 'bigger'; allowed: vgg_init_torchvision"):
            plan_runs(cfg, ["bigger"], [], [0])

    def test_switches_back_to_the_paper(self):
        """The demo config departs from the paper in the pooler and the predictor's init: the
        switches to torchvision's choices are its baseline, those back to the paper's run; the
        paper config is the other way round."""
        from benchmarks.ablation import plan_runs

        names = ["roialign", "roipool_paper", "predictor_init_torchvision",
                 "predictor_init_paper"]
        demo = plan_runs(load_config("vgg16_frcnn_shapes_demo.yaml"), names, [], [0])
        self.assertEqual([(r["row"], r["overrides"]) for r in demo[1:]], [
            ("plugin + roipool_paper", {"MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIPool"}),
            ("plugin + predictor_init_paper", {"MODEL.ROI_BOX_HEAD.PREDICTOR_INIT": "paper"})])
        paper = plan_runs(load_config("vgg16_frcnn.yaml"), names, [], [0])
        self.assertEqual([r["row"] for r in paper[1:]],
                         ["plugin + roialign", "plugin + predictor_init_torchvision"])

    def test_peers_alone(self):
        from benchmarks.ablation import plan_runs

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", "MODEL.ROI_BOX_HEAD.POOLER_TYPE",
                          "ROIAlignV2")
        runs = plan_runs(cfg, [], ["torchvision (own init)"], [0, 2], plugin=False)
        self.assertEqual([(r["row"], r["seed"], r["overrides"]) for r in runs],
                         [("torchvision (own init)", 0, {}), ("torchvision (own init)", 2, {})])
        # the peers keep their test-time switch (NMS 0.5 differs from the config's 0.3)
        self.assertEqual(runs[0]["test_switches"], ["test_nms_0.5"])
        self.assertEqual(plan_runs(cfg, [], [], [0], plugin=False), [])


@pytest.mark.usefixtures("tiny_shapes", "one_thread")
class TestTool(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.out = str(tmp_path / "ablation")

    def test_tiny_run_and_resume(self):
        tool = load_tool("ablate_accuracy")
        argv = ["--config-file", DEMO, "--seeds", "1", "--switches", "vgg_init_torchvision",
                "--peers", "torchvision (own init)", "--out-dir", self.out, *TINY]
        results = tool.main(argv)
        self.assertEqual(sorted(results), [
            "plugin + test_nms_0.5|0", "plugin + vgg_init_torchvision|0", "plugin|0",
            "torchvision (own init) + test_nms_0.5|0", "torchvision (own init)|0"])
        # a test-time row: the base row's training, evaluated with the switch
        test_row = results["plugin + test_nms_0.5|0"]
        self.assertEqual(test_row["train_time_s"], results["plugin|0"]["train_time_s"])
        self.assertEqual(test_row["overrides"], {"MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5})
        for r in results.values():
            self.assertIn("AP50", r["bbox"])
            self.assertEqual(r["iters"], 2)
        self.assertEqual(results["torchvision (own init)|0"]["model"]["init"], "own")
        path = os.path.join(self.out, "ablation.json")
        before = os.stat(path).st_mtime_ns
        again = tool.main(argv)  # everything is there: nothing is trained again
        self.assertEqual(os.stat(path).st_mtime_ns, before)
        self.assertEqual(json.loads(json.dumps(again, default=str)).keys(), results.keys())
        with open(os.path.join(self.out, "ablation.md")) as f:
            self.assertEqual(len(f.read().strip().splitlines()), 2 + 5)

    def test_test_time_variant_with_the_same_keys_gives_the_same_ap(self):
        """The retrained-free evaluation rebuilds the model with the keys and loads the trained
        weights: with the keys' own values it must give the base evaluation's AP exactly."""
        from benchmarks.accuracy import train_and_evaluate

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", *TINY)
        result = train_and_evaluate(
            cfg, "plugin", seed=0, output_dir=self.out,
            test_variants={"same": {"MODEL.ROI_HEADS.NMS_THRESH_TEST":
                                    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST}})
        # (json: NaN, e.g. the AP of an absent size, compares equal to itself)
        self.assertEqual(json.dumps(result["test_variants"]["same"], sort_keys=True),
                         json.dumps(result["bbox"], sort_keys=True))


# ------------------------------------------------------------ ImageNet-style start (--pretrained)
def _tiny_cfg(*extra):
    return load_config("vgg16_frcnn_shapes_demo.yaml", *TINY, *extra)


def _state(module, prefix=""):
    return {k: v.clone() for k, v in module.state_dict().items() if k.startswith(prefix)}


@pytest.fixture
def pretrained_file(tmp_path):
    """A plugin checkpoint as tools/train_net.py writes it, from other weights (seed 123)."""
    import torch
    from detectron2.modeling import build_model

    torch.manual_seed(123)
    source = build_model(_tiny_cfg())
    path = str(tmp_path / "source.pth")
    torch.save({"model": source.state_dict(), "iteration": 7}, path)
    return path, source.state_dict()


@pytest.mark.parametrize("kind,init", [("plugin", "own"), ("torchvision", "own"),
                                       ("torchvision", "copied"), ("d2", "own")])
def test_pretrained_backbone_and_fc_go_into_every_model(pretrained_file, kind, init):
    """The backbone and fc6/fc7 equal the checkpoint's; every other layer is what the same
    seed gives without --pretrained."""
    import torch
    from benchmarks.peers import build_benchmark_model, load_pretrained_parts

    path, source = pretrained_file
    parts = load_pretrained_parts(path)
    assert sorted(parts) == sorted(k for k in source if k.startswith(
        ("backbone.", "roi_heads.box_head.")))
    cfg = _tiny_cfg()
    model, info = build_benchmark_model(cfg, kind, seed=0, init=init, pretrained=parts)
    plain, _ = build_benchmark_model(cfg, kind, seed=0, init=init)
    got, ref = model.state_dict(), plain.state_dict()
    # the same layers under each model's own names
    tv = kind == "torchvision"
    backbone = "model.backbone.body." if tv else "backbone."
    fc = "model.roi_heads.box_head." if tv else "roi_heads.box_head."
    n_backbone = n_fc = 0
    for k, v in source.items():
        if k.startswith("backbone."):
            assert torch.equal(got[backbone + k[len("backbone."):]], v), k
            n_backbone += 1
        elif k.startswith("roi_heads.box_head."):
            assert torch.equal(got[fc + k[len("roi_heads.box_head."):]], v), k
            n_fc += 1
    assert n_backbone > 0 and n_fc == 4  # fc6 and fc7, weight and bias
    others = [k for k in got if not k.startswith((backbone, fc))]
    assert others and all(torch.equal(got[k], ref[k]) for k in others)
    assert info["pretrained_tensors"] >= n_backbone + (n_fc if kind != "d2" else 0)


def test_pretrained_errors_name_the_file_and_the_problem(tmp_path, pretrained_file):
    import torch
    from benchmarks.peers import build_benchmark_model, load_pretrained_parts
    from frcnn_plugin.cli import CheckpointError, MissingFileError

    with pytest.raises(MissingFileError, match="nope.pth"):
        load_pretrained_parts(str(tmp_path / "nope.pth"))
    rpn_only = str(tmp_path / "rpn_only.pth")
    torch.save({"model": {"proposal_generator.rpn_head.conv.weight": torch.zeros(1)}}, rpn_only)
    with pytest.raises(CheckpointError, match="rpn_only.pth has no weights named backbone"):
        load_pretrained_parts(rpn_only)
    parts = load_pretrained_parts(pretrained_file[0])
    wider = _tiny_cfg("MODEL.ROI_BOX_HEAD.FC_DIM", "48")  # the file's fc6 has 32 outputs
    with pytest.raises(CheckpointError, match=r"shape roi_heads.box_head.fc6.weight \(32, "):
        build_benchmark_model(wider, "plugin", seed=0, pretrained=parts)


def test_an_output_folder_keeps_one_start(tmp_path):
    from benchmarks.ablation import run_ablation
    from frcnn_plugin.cli import ConfigError

    out = tmp_path / "abl"
    out.mkdir()
    (out / "ablation.json").write_text(json.dumps({"plugin|0": dict(
        fake("plugin", 0, 40.0), pretrained="a.pth")}))
    with pytest.raises(ConfigError, match="pretrained=a.pth, this call has pretrained=None"):
        run_ablation(_tiny_cfg(), [], [], [0], str(out))


@pytest.mark.usefixtures("tiny_shapes", "one_thread")
def test_tool_runs_from_a_pretrained_checkpoint(tmp_path, pretrained_file):
    tool = load_tool("ablate_accuracy")
    out = str(tmp_path / "abl")
    results = tool.main(["--config-file", DEMO, "--seeds", "1", "--switches", "", "--peers",
                         "torchvision (own init)", "--out-dir", out,
                         "--pretrained", pretrained_file[0], *TINY])
    assert sorted(results) == ["plugin + test_nms_0.5|0", "plugin|0",
                               "torchvision (own init) + test_nms_0.5|0",
                               "torchvision (own init)|0"]
    for r in results.values():
        assert r["pretrained"] == pretrained_file[0] and r["model"]["pretrained_tensors"] > 0


def test_bad_config_value_is_one_error_before_any_run(tmp_path):
    from frcnn_plugin.cli import ConfigError

    out = tmp_path / "ablation"
    with pytest.raises(ConfigError, match="PREDICTOR_INIT='kaiming' is invalid; allowed: "
                                          "'paper', 'pytorch'"):
        load_tool("ablate_accuracy").main([
            "--config-file", os.path.join(CONFIGS, "vgg16_frcnn_shapes_hard.yaml"),
            "--seeds", "1", "--switches", "", "--peers", "", "--out-dir", str(out),
            "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", "kaiming"])
    assert not out.exists()  # nothing written


# ------------------------------------------------------- the rows train as tools/train_net.py
@pytest.mark.usefixtures("tiny_shapes", "one_thread")
def test_plugin_row_is_train_net_training(tmp_path):
    """The ablation's plugin row is tools/train_net.py's training: with the same keys and
    seed, the same losses in metrics.json, the same final weights and the same AP."""
    import torch

    keys = [*TINY, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "SOLVER.MAX_ITER", "3"]
    train_net = load_tool("train_net")
    ref = str(tmp_path / "train_net")
    ref_results = train_net.main(train_net.argument_parser().parse_args(
        ["--config-file", DEMO, "OUTPUT_DIR", ref, "SEED", "0", *keys]))
    out = str(tmp_path / "ablation")
    results = load_tool("ablate_accuracy").main(
        ["--config-file", DEMO, "--seeds", "1", "--switches", "", "--peers", "", "--out-dir",
         out, *keys])
    run = results["plugin|0"]
    assert run["output_dir"] == os.path.join(out, "runs", "plugin_0")

    def losses(folder):
        with open(os.path.join(folder, "metrics.json")) as f:
            rows = [json.loads(line) for line in f]
        return [{k: v for k, v in r.items() if "loss" in k or k == "iteration"}
                for r in rows if "total_loss" in r]

    assert losses(ref) and losses(ref) == losses(run["output_dir"])
    assert run["last_losses"] and set(run["last_losses"]) < set(losses(ref)[-1])

    def weights(folder):
        return torch.load(os.path.join(folder, "model_final.pth"), map_location="cpu",
                          weights_only=False)["model"]

    a, b = weights(ref), weights(run["output_dir"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.dumps(ref_results["bbox"], sort_keys=True) == json.dumps(run["bbox"],
                                                                         sort_keys=True)


@pytest.mark.usefixtures("tiny_shapes", "one_thread")
def test_every_kind_trains_on_the_same_images(tmp_path):
    """Whatever the model, the trainer leaves the random generators as tools/train_net.py's
    does after building the plugin's model, so every kind trains on the same images in the
    same order with the same augmentations (the boxes after the random flip)."""
    import numpy as np
    import torch
    from benchmarks.accuracy import benchmark_config, build_benchmark_trainer

    seen = {}
    for kind, init in [("plugin", "copied"), ("torchvision", "own"), ("torchvision", "copied"),
                       ("d2", "copied")]:
        cfg = benchmark_config(_tiny_cfg(), seed=3, evaluate=False,
                               output_dir=str(tmp_path / kind / init))
        trainer = build_benchmark_trainer(cfg, kind, init=init)
        assert trainer.model_info["kind"] == kind
        state = (torch.get_rng_state(), np.random.get_state()[1])
        batches = []
        trainer.model.register_forward_pre_hook(lambda m, args: batches.append(
            [(x["file_name"], x["instances"].gt_boxes.tensor.tolist()) for x in args[0]]))
        trainer.train()
        assert len(batches) == 2 and trainer.clock.seconds > 0
        seen[kind, init] = state, batches
    (ref_torch, ref_np), ref_batches = seen["plugin", "copied"]
    for key, ((torch_state, np_state), batches) in seen.items():
        assert torch.equal(torch_state, ref_torch) and (np_state == ref_np).all(), key
        assert batches == ref_batches, key
