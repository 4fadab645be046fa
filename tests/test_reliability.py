"""Crash safety (atomic checkpoints, SIGKILL then --resume), non-finite losses, determinism.

The kill/resume test runs tools/train_net.py in subprocesses on a tiny data set written under
$DETECTRON2_DATASETS with the built-in names (frcnn_shapes_train/val); the others train in
process on the conftest's tiny_shapes data sets. All use VGG11, 64x64 images, fc 32, 3-4
iterations.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
import unittest

import pytest
import torch
from torch import nn

from detectron2.engine import HookBase

from tests.conftest import CONFIGS, REPO, TINY_MODEL, TINY_SCHEDULE, load_tool

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")

# The smallest model and schedule that still runs the real pipeline.
TINY = [
    *TINY_MODEL, *TINY_SCHEDULE,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "200", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "SEED", "7",
]  # fmt: skip
# In process: the conftest's tiny_shapes data sets.
TINY_TEST_DATA = ["DATASETS.TRAIN", "('frcnn_test_train',)", "DATASETS.TEST", "()"]


def tiny_cfg(out, *extra):
    """A frozen config through train_net's setup (validation, output check, default_setup)."""
    train_net = load_tool("train_net")
    args = train_net.argument_parser().parse_args(
        ["--config", DEMO, *TINY, *TINY_TEST_DATA, "OUTPUT_DIR", str(out), *extra]
    )
    return train_net.setup(args)


def write_builtin_shapes(root):
    """A tiny data set under the built-in names, for subprocesses: ``frcnn_shapes_train`` (8
    images) and ``frcnn_shapes_val`` (4), 64x64, at $DETECTRON2_DATASETS=root. The built-in
    registration generates its data only when the annotation file is missing."""
    from frcnn_plugin.data import generate_shapes_dataset

    base = os.path.join(str(root), "frcnn_shapes")
    generate_shapes_dataset(
        os.path.join(base, "train"), 8, image_size=64, seed=0, min_size=12, max_size=32
    )
    generate_shapes_dataset(
        os.path.join(base, "val"), 4, image_size=64, seed=1, min_size=12, max_size=32
    )
    return str(root)


def subprocess_env(data_root):
    env = dict(os.environ, DETECTRON2_DATASETS=data_root, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def poison(model, iterations, loss="loss_cls"):
    """Make ``loss`` NaN at the given iterations (all from the first if ``iterations`` is None)."""
    from detectron2.utils.events import get_event_storage

    forward = model.forward

    def poisoned(batched_inputs):
        losses = forward(batched_inputs)
        it = get_event_storage().iter
        if iterations is None or it in iterations:
            losses[loss] = losses[loss] * float("nan")
        return losses

    model.forward = poisoned


@pytest.mark.usefixtures("tiny_shapes")
class TestNonFiniteLoss(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def trainer(self, *extra):
        from frcnn_plugin.engine import Trainer

        trainer = Trainer(tiny_cfg(self.tmp / "out", *extra))
        trainer.resume_or_load(resume=False)
        return trainer

    def test_error_names_loss_and_iteration(self):
        trainer = self.trainer()
        poison(trainer.model, {1})
        with self.assertRaisesRegex(FloatingPointError, r"iteration 1: loss_cls=nan"):
            trainer.train()

    def test_skip_counts_and_skips_the_step(self):
        trainer = self.trainer("SOLVER.NONFINITE_LOSS", "skip")
        poison(trainer.model, {1})
        params = []

        class Record(HookBase):
            def after_step(self):
                # parameters only: batch-norm statistics move in every training forward
                named = self.trainer.model.named_parameters()
                params.append({k: v.detach().clone() for k, v in named})

        trainer.register_hooks([Record()])
        with self.assertLogs("frcnn_plugin.engine.train_loop", "WARNING") as logs:
            trainer.train()
        same = [all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(params, params[1:])]
        self.assertEqual(same, [True, False])  # iteration 1 changed nothing, 2 trained again
        self.assertEqual(trainer.storage.history("nonfinite_loss/skipped_steps").latest(), 1)
        self.assertIn("Non-finite loss at iteration 1: loss_cls=nan", "\n".join(logs.output))
        self.assertEqual(trainer.iter, 3)  # trained to the end

    def test_skip_stops_after_consecutive_skips(self):
        trainer = self.trainer(
            "SOLVER.NONFINITE_LOSS", "skip", "SOLVER.NONFINITE_LOSS_MAX_SKIPS", "2"
        )
        poison(trainer.model, None)
        with self.assertRaisesRegex(FloatingPointError, r"2 consecutive iterations"):
            trainer.train()


    def nan_pixel_trainer(self, *extra):
        """A Trainer whose second batch (iteration 1) has one NaN pixel in its first image:
        a non-finite forward pass, before any loss exists."""
        from frcnn_plugin.engine import Trainer

        class NaNPixelTrainer(Trainer):
            @classmethod
            def build_train_loader(cls, cfg):
                loader = super().build_train_loader(cfg)

                def batches():
                    for i, batch in enumerate(loader):
                        if i == 1:
                            image = batch[0]["image"].float()
                            image[0, 10, 10] = float("nan")
                            batch[0]["image"] = image
                        yield batch

                return batches()

        trainer = NaNPixelTrainer(tiny_cfg(self.tmp / "out", *extra))
        trainer.resume_or_load(resume=False)
        return trainer

    def test_nan_pixel_under_error_stops_naming_the_iteration(self):
        trainer = self.nan_pixel_trainer()
        with self.assertRaisesRegex(FloatingPointError, r"iteration 1: .*loss_rpn_cls=nan"):
            trainer.train()
        self.assertEqual(trainer.iter, 1)

    def test_nan_pixel_under_skip_skips_that_step_only(self):
        trainer = self.nan_pixel_trainer("SOLVER.NONFINITE_LOSS", "skip")
        states = []

        class Record(HookBase):
            def after_step(self):
                # parameters and buffers (batch-norm statistics): a skipped step keeps both
                states.append({k: v.detach().clone()
                               for k, v in self.trainer.model.state_dict().items()})

        trainer.register_hooks([Record()])
        with self.assertLogs("frcnn_plugin.engine.train_loop", "WARNING") as logs:
            trainer.train()
        self.assertEqual(trainer.iter, 3)  # trained to the end
        same = [all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(states, states[1:])]
        self.assertEqual(same, [True, False])  # iteration 1 changed nothing, 2 trained again
        self.assertTrue(all(bool(torch.isfinite(v.float()).all()) for v in states[-1].values()))
        self.assertEqual(trainer.storage.history("nonfinite_loss/skipped_steps").latest(), 1)
        self.assertIn("Non-finite loss at iteration 1:", "\n".join(logs.output))


@pytest.mark.usefixtures("tiny_shapes")
class TestDeterminism(unittest.TestCase):
    def test_same_seed_same_losses(self):
        from frcnn_plugin.engine import Trainer

        def losses(out):
            trainer = Trainer(tiny_cfg(out))
            trainer.resume_or_load(resume=False)
            trainer.train()
            names = [k for k in trainer.storage.histories() if k.startswith("loss_")]
            return {k: [v for v, _ in trainer.storage.history(k).values()] for k in names}

        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            first = losses(os.path.join(tmp, "a"))
            second = losses(os.path.join(tmp, "b"))
        self.assertEqual(set(first), {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"})
        self.assertTrue(all(len(v) == 3 for v in first.values()), first)
        self.assertEqual(first, second)


class TestAtomicCheckpointer(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.dir = str(tmp_path)

    def test_kill_during_write_keeps_last_complete_checkpoint(self):
        script = textwrap.dedent("""
            import os, signal, sys
            import torch
            from torch import nn
            from frcnn_plugin.engine.checkpoint import AtomicCheckpointer

            torch.manual_seed(0)
            c = AtomicCheckpointer(nn.Linear(4, 2), sys.argv[1], save_to_disk=True)
            c.save("model_0000001", iteration=1)

            def dying_save(obj, f):  # killed halfway through writing the next checkpoint
                f.write(b"PK\\x03\\x04 half a checkpoint")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            torch.save = dying_save
            c.save("model_0000003", iteration=3)
        """)
        proc = subprocess.run(
            [sys.executable, "-c", script, self.dir],
            cwd=REPO,
            timeout=120,
            capture_output=True,
            text=True,
        )
        self.assertEqual(proc.returncode, -signal.SIGKILL, proc.stderr)
        files = sorted(os.listdir(self.dir))
        self.assertIn("model_0000001.pth", files)
        self.assertNotIn("model_0000003.pth", files)
        self.assertTrue(any(f.startswith("model_0000003.pth.tmp-") for f in files), files)
        with open(os.path.join(self.dir, "last_checkpoint")) as f:
            self.assertEqual(f.read(), "model_0000001.pth")

        from frcnn_plugin.engine import AtomicCheckpointer

        torch.manual_seed(0)
        expected = nn.Linear(4, 2).state_dict()
        model = nn.Linear(4, 2)
        extra = AtomicCheckpointer(model, self.dir).resume_or_load("", resume=True)
        self.assertEqual(extra["iteration"], 1)
        self.assertTrue(torch.equal(model.weight, expected["weight"]))
        self.assertEqual(sorted(os.listdir(self.dir)), ["last_checkpoint", "model_0000001.pth"])

    def test_save_replaces_atomically_and_tags(self):
        from frcnn_plugin.engine import AtomicCheckpointer

        c = AtomicCheckpointer(nn.Linear(4, 2), self.dir, save_to_disk=True)
        c.save("model_a")
        c.save("model_b")
        self.assertEqual(
            sorted(os.listdir(self.dir)), ["last_checkpoint", "model_a.pth", "model_b.pth"]
        )
        self.assertEqual(c.get_checkpoint_file(), os.path.join(self.dir, "model_b.pth"))


KILL_RESUME = [
    "DATASETS.TRAIN",
    "('frcnn_shapes_train',)",
    "DATASETS.TEST",
    "()",
    "SOLVER.CHECKPOINT_PERIOD",
    "2",
]


class TestKillAndResume(unittest.TestCase):
    """SIGKILL a real training run after its first periodic checkpoint, then --resume."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.env = subprocess_env(write_builtin_shapes(tmp_path / "datasets"))
        self.out = str(tmp_path / "out")

    def cmd(self, *extra, flags=()):
        return [
            sys.executable,
            TRAIN_NET,
            "--config",
            DEMO,
            *flags,
            *TINY,
            *KILL_RESUME,
            "OUTPUT_DIR",
            self.out,
            *extra,
        ]

    def test_sigkill_then_resume(self):
        proc = subprocess.Popen(
            self.cmd("SOLVER.MAX_ITER", "1000"),
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # a checkpoint is complete once its tag is written, after the model file: waiting
        # for the model file alone could kill the run between the two writes
        tag = os.path.join(self.out, "last_checkpoint")
        try:
            deadline = time.time() + 240
            while not os.path.exists(tag) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            self.assertTrue(os.path.exists(tag), "no periodic checkpoint was written")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
        with open(os.path.join(self.out, "last_checkpoint")) as f:
            tagged = f.read()
        done = int(tagged[len("model_") : -len(".pth")])
        state = torch.load(os.path.join(self.out, tagged), map_location="cpu", weights_only=True)
        self.assertEqual(state["iteration"], done)  # complete, readable
        self.assertGreater(len(state["trainer"]["_trainer"]["optimizer"]["state"]), 0)

        max_iter = done + 3
        resumed = subprocess.run(
            self.cmd("SOLVER.MAX_ITER", str(max_iter), flags=["--resume"]),
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        log = resumed.stdout + resumed.stderr
        self.assertEqual(resumed.returncode, 0, log[-3000:])
        self.assertIn(
            "Resumed from {}: iteration {} done, continuing at {}".format(
                os.path.join(self.out, tagged), done, done + 1
            ),
            log,
        )
        self.assertRegex(
            log,
            r"optimizer state for [1-9]\d* parameter tensors; LR scheduler at "
            r"step {}".format(done + 1),
        )
        self.assertIn("Starting training from iteration {}".format(done + 1), log)
        with open(os.path.join(self.out, "last_checkpoint")) as f:
            self.assertEqual(f.read(), "model_final.pth")
        final = torch.load(
            os.path.join(self.out, "model_final.pth"), map_location="cpu", weights_only=True
        )
        self.assertEqual(final["iteration"], max_iter - 1)
        # the scheduler went on counting from the checkpoint instead of restarting at 0
        self.assertEqual(final["trainer"]["hooks"]["LRScheduler"]["last_epoch"], max_iter)
        self.assertFalse([f for f in os.listdir(self.out) if ".tmp-" in f])
