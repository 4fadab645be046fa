"""NonFiniteLossGuard on detectron2's own SimpleTrainer (v0.6 and main, with main's
zero_grad_before_forward too) and on the AMP sequence of AMPTrainer (GradScaler), with a tiny
model whose loss is NaN at chosen iterations: what changes, and what must not."""
import copy
import inspect
import unittest

import torch
from torch import nn

from detectron2.engine import HookBase, SimpleTrainer, TrainerBase
from detectron2.utils.events import EventStorage

from frcnn_plugin.data.mappers import SKIPPED_KEY
from frcnn_plugin.engine.train_loop import NonFiniteLossGuard


class TinyModel(nn.Module):
    """Two loss terms from one linear layer; ``loss_b`` is NaN at ``nan_at`` iterations."""

    def __init__(self, nan_at=()):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3, 2)
        self.nan_at = set(nan_at)
        self.iteration = 0
        self.seen_keys = []

    def forward(self, batch):
        self.seen_keys.append(sorted(batch[0]))
        x = torch.stack([d["x"] for d in batch])
        y = self.fc(x)
        loss_b = y[:, 1].pow(2).mean()
        if self.iteration in self.nan_at:
            loss_b = loss_b * float("nan")
        self.iteration += 1
        return {"loss_a": y[:, 0].abs().mean(), "loss_b": loss_b}


def batches():
    g = torch.Generator().manual_seed(1)
    while True:
        yield [{"x": torch.randn(3, generator=g)}, {"x": torch.randn(3, generator=g)}]


class Snapshots(HookBase):
    """Parameters and SGD momentum buffers after every step."""

    def __init__(self):
        self.params, self.momenta = [], []

    def after_step(self):
        model, opt = self.trainer.model, self.trainer.optimizer
        self.params.append(copy.deepcopy(model.state_dict()))
        self.momenta.append([copy.deepcopy(opt.state[p].get("momentum_buffer"))
                             for p in model.parameters()])


def simple_trainer(model, guard, data=None, **kwargs):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    trainer = SimpleTrainer(model, data or batches(), opt, **kwargs)
    snaps = Snapshots()
    trainer.register_hooks([guard, snaps])
    return trainer, snaps


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


class TestSimpleTrainer(unittest.TestCase):
    def test_error_before_any_update_names_term_and_iteration(self):
        model = TinyModel(nan_at={1})
        trainer, snaps = simple_trainer(model, NonFiniteLossGuard("error"))
        with self.assertRaisesRegex(FloatingPointError,
                                    r"^Non-finite loss at iteration 1: loss_b=nan\. "):
            trainer.train(0, 3)
        self.assertEqual(len(snaps.params), 1)  # only iteration 0 completed
        self.assertTrue(same(snaps.params[0], model.state_dict()))  # iteration 1 changed nothing

    def check_skip(self, **trainer_kwargs):
        model = TinyModel(nan_at={1})
        guard = NonFiniteLossGuard("skip")
        trainer, snaps = simple_trainer(model, guard, **trainer_kwargs)
        with self.assertLogs("frcnn_plugin.engine.train_loop", "WARNING") as logs:
            trainer.train(0, 3)
        p, m = snaps.params, snaps.momenta
        self.assertTrue(same(p[1], p[0]))  # the skipped step left every parameter
        for a, b in zip(m[1], m[0]):  # and every momentum buffer exactly as they were
            self.assertTrue(torch.equal(a, b))
        self.assertFalse(same(p[2], p[1]))  # the next step updates again
        self.assertFalse(same(p[0], TinyModel().state_dict()))
        self.assertEqual((guard.skipped_steps, guard.consecutive_skips), (1, 0))
        self.assertEqual(trainer.storage.history("nonfinite_loss/skipped_steps").latest(), 1)
        self.assertIn("Non-finite loss at iteration 1: loss_b=nan; optimizer step skipped",
                      "\n".join(logs.output))
        # detectron2's metrics writer saw finite values (the term zeroed for that step)
        self.assertTrue(all(torch.isfinite(torch.tensor(v)) for v, _ in
                            trainer.storage.history("loss_b").values()))

    def test_skip_leaves_parameters_and_optimizer_state_unchanged(self):
        self.check_skip()

    def test_skip_with_zero_grad_before_forward(self):
        if "zero_grad_before_forward" not in inspect.signature(SimpleTrainer).parameters:
            self.skipTest("this detectron2 (v0.6) has no zero_grad_before_forward")
        self.check_skip(zero_grad_before_forward=True)

    def test_consecutive_skips_stop(self):
        trainer, _ = simple_trainer(TinyModel(nan_at=range(10)), NonFiniteLossGuard("skip", 2))
        with self.assertRaisesRegex(FloatingPointError, r"Non-finite loss in 2 consecutive "
                                    r"iterations \(the last: 1: loss_b=nan\)"):
            trainer.train(0, 5)

    def test_skipped_samples_are_counted_and_removed_from_the_batch(self):
        def with_markers():
            for i, batch in enumerate(batches()):
                if i in (0, 2):
                    batch[1][SKIPPED_KEY] = 2
                yield batch

        model = TinyModel()
        trainer, _ = simple_trainer(model, NonFiniteLossGuard(), data=with_markers())
        trainer.train(0, 3)
        self.assertEqual(trainer.storage.history("data/skipped_samples").latest(), 4)
        self.assertEqual(model.seen_keys, [["x"]] * 3)  # the model never saw the marker

    def test_hooks_removed_after_training_and_eval_untouched(self):
        model = TinyModel(nan_at={0})
        trainer, _ = simple_trainer(model, NonFiniteLossGuard("error"))
        with self.assertRaises(FloatingPointError):
            trainer.train(0, 1)
        self.assertEqual((len(model._forward_hooks), len(model._forward_pre_hooks)), (0, 0))
        model.iteration = 0
        model.eval()
        out = model([{"x": torch.zeros(3)}])  # NaN in eval mode: not the guard's business
        self.assertTrue(bool(torch.isnan(out["loss_b"])))

    def test_bad_mode(self):
        with self.assertRaisesRegex(ValueError, r"SOLVER.NONFINITE_LOSS='ignore' is invalid; "
                                    r"allowed: 'error' or 'skip'"):
            NonFiniteLossGuard("ignore")


class TestGradScalerSequence(unittest.TestCase):
    """AMPTrainer needs CUDA in both detectron2 builds; its sequence (autocast forward,
    scaled backward, GradScaler.step, update) runs here on the CPU with torch's CPU
    GradScaler, with the same guard hooks."""

    def test_skip_with_grad_scaler(self):
        model = TinyModel(nan_at={1})
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        host = TrainerBase()
        host.model, host.optimizer = model, opt
        guard = NonFiniteLossGuard("skip")
        snaps = Snapshots()
        host.register_hooks([guard, snaps])
        scaler = torch.amp.GradScaler("cpu")
        data = batches()
        with EventStorage(0) as host.storage:
            guard.before_train()
            for host.iter in range(3):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    losses = model(next(data))
                opt.zero_grad()
                scaler.scale(sum(losses.values())).backward()
                scaler.step(opt)
                scaler.update()
                guard.after_step()
                snaps.after_step()
                host.storage.step()
            guard.after_train()
        self.assertTrue(same(snaps.params[1], snaps.params[0]))
        self.assertFalse(same(snaps.params[2], snaps.params[1]))
        self.assertEqual(guard.skipped_steps, 1)


if __name__ == "__main__":
    unittest.main()
