"""End to end through tools/lazy_train_net.py: the demo's Python config trains and evaluates on
the generated shapes exactly as tools/train_net.py does with its YAML twin (same seed, same
schedule: same weights, same AP), checkpoints with the optimizer state, resumes, evaluates a
checkpoint, and reports a user's mistake as one error."""
import os

import pytest
import torch

from frcnn_plugin.cli import ConfigError, MissingFileError

from .conftest import CONFIGS, load_tool
from .test_lazy import TINY_LAZY, TINY_YAML
from .test_train_net import same_metrics

DEMO_YAML = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
DEMO_PY = os.path.join(CONFIGS, "lazy", "vgg16_frcnn_shapes_demo.py")

# the tiny data sets of conftest, 64 px, 3 iterations of 2 images, 1 warm-up iteration
SMALL_YAML = TINY_YAML + [
    "DATASETS.TRAIN", "('frcnn_test_train',)", "DATASETS.TEST", "('frcnn_test_val',)",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "100",
]  # fmt: skip
SMALL_LAZY = TINY_LAZY + [
    "dataloader.train.dataset.names=frcnn_test_train",
    "dataloader.test.dataset.names=frcnn_test_val",
    "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
    "dataloader.train.mapper.augmentations.0.max_size=64",
    "dataloader.test.mapper.augmentations.0.short_edge_length=64",
    "dataloader.test.mapper.augmentations.0.max_size=64",
    "dataloader.train.total_batch_size=2",
    "train.max_iter=3",
    "lr_multiplier.warmup_length={!r}".format(1 / 3),
    "lr_multiplier.scheduler.values=[1.0]",
    "lr_multiplier.scheduler.milestones=[]",
    "lr_multiplier.scheduler.num_updates=3",
    "train.checkpointer.period=100",
]


@pytest.fixture(scope="module")
def lazy_tool():
    return load_tool("lazy_train_net")


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.usefixtures("tiny_shapes")
def test_lazy_tool_reproduces_the_yaml_run_then_resumes_and_evaluates(lazy_tool, tmp_path):
    yaml_out, lazy_out = str(tmp_path / "yaml"), str(tmp_path / "lazy")
    train_net = load_tool("train_net")
    yres = train_net.main(train_net.argument_parser().parse_args(
        ["--config-file", DEMO_YAML, "OUTPUT_DIR", yaml_out] + SMALL_YAML))
    parser = lazy_tool.argument_parser()
    lres = lazy_tool.main(parser.parse_args(
        ["--config-file", DEMO_PY, "train.output_dir=" + lazy_out] + SMALL_LAZY))

    # same seed and schedule: the same weights after training, the same AP
    a = _weights(os.path.join(yaml_out, "model_final.pth"))
    b = _weights(os.path.join(lazy_out, "model_final.pth"))
    assert list(a["model"]) == list(b["model"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert set(lres) == {"bbox"} and same_metrics(yres["bbox"], lres["bbox"]), (yres, lres)
    # the checkpoint holds the optimizer state and the LR scheduler, the config is saved
    assert len(b["trainer"]["_trainer"]["optimizer"]["state"]) > 0
    assert b["iteration"] == 2
    assert os.path.isfile(os.path.join(lazy_out, "config.yaml"))
    assert os.path.isfile(os.path.join(lazy_out, "eval_results.json"))

    # --resume with a longer schedule continues at iteration 3
    more = lazy_tool.main(parser.parse_args(
        ["--config-file", DEMO_PY, "--resume", "train.output_dir=" + lazy_out] + SMALL_LAZY
        + ["train.max_iter=4", "lr_multiplier.scheduler.num_updates=4"]))
    assert _weights(os.path.join(lazy_out, "model_final.pth"))["iteration"] == 3
    assert set(more) == {"bbox"}

    # --eval-only of the first run's weights gives its AP again
    again = lazy_tool.main(parser.parse_args(
        ["--config-file", DEMO_PY, "--eval-only", "train.output_dir=" + str(tmp_path / "eval"),
         "train.init_checkpoint=" + os.path.join(yaml_out, "model_final.pth")] + SMALL_LAZY))
    assert same_metrics(yres["bbox"], again["bbox"]), (yres, again)


def test_lazy_tool_user_errors(lazy_tool, tmp_path, capsys):
    from frcnn_plugin.cli import run_cli

    with pytest.raises(SystemExit) as e:
        run_cli(lazy_tool._cli, ["--config-file", str(tmp_path / "missing.py")])
    assert e.value.code == 2
    assert "error: Config file not found" in capsys.readouterr().err
    parser = lazy_tool.argument_parser()
    with pytest.raises(ConfigError, match="did you mean: train.max_iter"):
        lazy_tool.load_config(parser.parse_args(["--config-file", DEMO_PY, "train.max_itr=3"]))
    with pytest.raises(MissingFileError):
        lazy_tool.main(parser.parse_args(
            ["--config-file", DEMO_PY, "--eval-only", "train.output_dir=" + str(tmp_path),
             "train.init_checkpoint=" + str(tmp_path / "none.pth")] + TINY_LAZY))
    with pytest.raises(ConfigError, match="NONFINITE_LOSS"):
        lazy_tool.main(parser.parse_args(
            ["--config-file", DEMO_PY, "train.output_dir=" + str(tmp_path),
             "train.nonfinite_loss=ignore"] + TINY_LAZY))
    partial = tmp_path / "partial.py"
    partial.write_text("from frcnn_plugin.lazy import model_zoo_config\n"
                       "train = model_zoo_config('common/train.py').train\n")
    with pytest.raises(ConfigError, match="lacks model, dataloader, optimizer, lr_multiplier"):
        lazy_tool.load_config(parser.parse_args(["--config-file", str(partial)]))


@pytest.mark.usefixtures("tiny_shapes")
def test_lazy_trainer_hooks(tmp_path):
    """The plugin's hooks in the YAML trainer's places: the non-finite loss guard first, the
    prediction pictures (train.vis_period) just before the writer."""
    from detectron2.engine.hooks import PeriodicWriter

    from frcnn_plugin.engine import NonFiniteLossGuard, PredictionVisHook
    from frcnn_plugin.engine.lazy_trainer import LazyTrainer
    from frcnn_plugin.lazy import load_lazy_config

    cfg = load_lazy_config(DEMO_PY, SMALL_LAZY + [
        "train.output_dir=" + str(tmp_path), "train.vis_period=2", "train.vis_num_images=1"])
    trainer = LazyTrainer(cfg)
    kinds = [type(h) for h in trainer._hooks]
    for writer in (w for h in trainer._hooks if isinstance(h, PeriodicWriter)
                   for w in h._writers):
        writer.close()  # the metrics.json and TensorBoard files it opened
    assert kinds[0] is NonFiniteLossGuard
    assert kinds.index(PredictionVisHook) == kinds.index(PeriodicWriter) - 1
