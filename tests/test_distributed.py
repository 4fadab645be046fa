"""Multi-process training with 2 CPU processes (GLOO) through tools/train_net.py and
frcnn_plugin.engine.launch; a failing rank ends the job with a clear error, without a hang.

Everything runs in subprocesses with timeouts, so a hang fails the test instead of blocking CI.
"""
import json
import os
import subprocess
import sys
import textwrap
import time
import unittest

import pytest

from tests.conftest import REPO
from tests.test_reliability import DEMO, TINY, TRAIN_NET, subprocess_env, write_builtin_shapes


def fail_on_rank_1(message):
    """Rank 1 raises at once; rank 0 waits in a barrier that rank 1 never reaches."""
    from detectron2.utils import comm

    if comm.get_rank() == 1:
        raise ValueError(message)
    comm.synchronize()


def train_with_nan_on_rank_1(out, result_path):
    """A tiny DDP training in which only rank 1 sees a NaN loss at iteration 1 (mode "skip"):
    both ranks must skip that step together, and the replica check must pass every step."""
    from detectron2.utils import comm

    from frcnn_plugin.engine import Trainer
    from tests.test_reliability import poison, tiny_cfg

    cfg = tiny_cfg(out, "DATASETS.TRAIN", "('frcnn_shapes_train',)", "SOLVER.NONFINITE_LOSS",
                   "'skip'", "SOLVER.SYNC_CHECK_PERIOD", "1")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    if comm.get_rank() == 1:
        poison(trainer.model.module, {1})
    import logging

    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("frcnn_plugin.engine.train_loop").addHandler(handler)
    gathers = []  # the guard adds no collective: only the replica check's, one per iteration
    all_gather = comm.all_gather
    comm.all_gather = lambda *a, **k: (gathers.append(1), all_gather(*a, **k))[1]
    try:
        trainer.train()
    finally:
        comm.all_gather = all_gather
    with open("{}.{}".format(result_path, comm.get_rank()), "w") as f:
        json.dump({"layout": [comm.get_rank(), comm.get_world_size(), comm.get_local_rank(),
                              comm.get_local_size()],
                   "skipped_steps": trainer.nonfinite_guard.skipped_steps, "iter": trainer.iter,
                   "all_gathers": len(gathers), "warnings": warnings}, f)


def run_launch(snippet, timeout=240, env=None):
    code = textwrap.dedent("""
        import sys
        from frcnn_plugin.engine.launch import launch
        from tests.test_distributed import fail_on_rank_1, train_with_nan_on_rank_1
    """) + textwrap.dedent(snippet)
    env = dict(env or os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, timeout=timeout,
                          capture_output=True, text=True)


class TestLaunch(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_cpu_processes_skip_nonfinite_step_together(self):
        env = subprocess_env(write_builtin_shapes(self.tmp / "datasets"))
        result = str(self.tmp / "result")
        proc = run_launch("launch(train_with_nan_on_rank_1, 2, dist_url='auto', args=({!r}, "
                          "{!r}))".format(str(self.tmp / "out"), result), env=env)
        self.assertEqual(proc.returncode, 0, (proc.stdout + proc.stderr)[-3000:])
        results = []
        for r in (0, 1):
            with open("{}.{}".format(result, r)) as f:
                results.append(json.load(f))
        # detectron2's comm sees 2 processes on one machine (the local process group is set up)
        self.assertEqual([r["layout"] for r in results], [[0, 2, 0, 2], [1, 2, 1, 2]])
        self.assertEqual([r["skipped_steps"] for r in results], [1, 1])
        self.assertEqual([r["iter"] for r in results], [3, 3])
        self.assertEqual([r["all_gathers"] for r in results], [3, 3])
        rank0, rank1 = ([w.split(" (1 in a row")[0] for w in r["warnings"]] for r in results)
        self.assertEqual(rank0, ["Non-finite loss at iteration 1: on another process (the "
                                 "gradients carry it); optimizer step skipped"])
        self.assertEqual(rank1, ["Non-finite loss at iteration 1: loss_cls=nan (rank 1); "
                                 "optimizer step skipped"])

    def test_failing_rank_ends_job_with_clear_error(self):
        start = time.time()
        proc = run_launch("""
            from datetime import timedelta
            try:
                launch(fail_on_rank_1, 2, dist_url="auto", args=("boom from rank 1",),
                       timeout=timedelta(seconds=60))
            except Exception as e:
                print("RAISED", type(e).__name__, e)
                sys.exit(3)
        """)
        self.assertEqual(proc.returncode, 3, proc.stderr[-3000:])
        self.assertIn("RAISED DistributedTrainingError Process 1 (global rank 1) of 2 failed; the "
                      "others were stopped", proc.stdout)
        self.assertIn("ValueError: boom from rank 1", proc.stdout)
        self.assertLess(time.time() - start, 120)

    def test_upstream_local_process_group_api(self):
        import importlib

        from detectron2.utils import comm

        launch_module = importlib.import_module("frcnn_plugin.engine.launch")
        calls = []
        had = hasattr(comm, "create_local_process_group")
        original = getattr(comm, "create_local_process_group", None)
        comm.create_local_process_group = calls.append
        try:
            launch_module._setup_local_process_group(4, 1, 8)
        finally:
            if had:
                comm.create_local_process_group = original
            else:
                del comm.create_local_process_group
        self.assertEqual(calls, [4])


class TestTwoProcessTraining(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.env = subprocess_env(write_builtin_shapes(tmp_path / "datasets"))
        self.out = str(tmp_path / "out")

    def test_train_sync_and_gather_evaluation(self):
        proc = subprocess.run(
            [sys.executable, TRAIN_NET, "--config", DEMO, "--num-processes", "2", "--dist-url",
             "auto", *TINY, "DATASETS.TRAIN", "('frcnn_shapes_train',)", "DATASETS.TEST",
             "('frcnn_shapes_val',)", "SOLVER.SYNC_CHECK_PERIOD", "1", "OUTPUT_DIR", self.out],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=400,
        )
        self.assertEqual(proc.returncode, 0, (proc.stdout + proc.stderr)[-3000:])
        with open(os.path.join(self.out, "log.txt")) as f:
            log = f.read()
        self.assertIn("Rank of current process: 0. World size: 2", log)
        for it in range(3):  # weights identical on both ranks after every step
            self.assertRegex(log, r"Replica check at iteration {}: parameters identical on 2 "
                                  r"processes".format(it))
        self.assertTrue(os.path.isfile(os.path.join(self.out, "log.txt.rank1")))
        # each rank evaluated half of the 4 validation images; rank 0 gathered all of them
        self.assertIn("on 2 devices", log)
        preds = os.path.join(self.out, "inference", "frcnn_shapes_val",
                             "coco_instances_results.json")
        with open(preds) as f:
            self.assertEqual({p["image_id"] for p in json.load(f)}, {1, 2, 3, 4})
        with open(os.path.join(self.out, "eval_results.json")) as f:
            self.assertIn("AP50", json.load(f)["bbox"])
        self.assertTrue(os.path.isfile(os.path.join(self.out, "model_final.pth")))


class TestHookOrder(unittest.TestCase):
    """``add_plugin_hooks`` in a multi-process job: the guard first, the replica check after
    the hooks that change or save a step's weights (LR scheduler, checkpointer), before the
    evaluation and the writers, on the main process (which has the checkpointer and writers)
    and on the others."""

    def order(self, hooks, world_size=2):
        from unittest import mock

        from frcnn_plugin.engine.hooks import ReplicaSyncCheck
        from frcnn_plugin.engine.train_loop import NonFiniteLossGuard
        from frcnn_plugin.engine.trainer import add_plugin_hooks

        with mock.patch("frcnn_plugin.engine.trainer.comm.get_world_size",
                        return_value=world_size):
            out = add_plugin_hooks(None, hooks, NonFiniteLossGuard(), sync_check_period=5)
        assert sum(isinstance(h, ReplicaSyncCheck) for h in out) == (world_size > 1)
        return [type(h).__name__ if h is not None else None for h in out]

    def test_after_the_checkpointer_before_evaluation_and_writers(self):
        import torch
        from detectron2.checkpoint import DetectionCheckpointer
        from detectron2.engine import hooks

        def default_trainer_hooks(main_process):  # DefaultTrainer.build_hooks' list
            ret = [hooks.IterationTimer(), hooks.LRScheduler(), None]  # None: no PreciseBN
            if main_process:
                ret.append(hooks.PeriodicCheckpointer(
                    DetectionCheckpointer(torch.nn.Linear(1, 1)), 100))
            ret.append(hooks.EvalHook(0, dict))
            if main_process:
                ret.append(hooks.PeriodicWriter([]))
            return ret

        self.assertEqual(self.order(default_trainer_hooks(True)), [
            "NonFiniteLossGuard", "IterationTimer", "LRScheduler", None, "PeriodicCheckpointer",
            "ReplicaSyncCheck", "EvalHook", "PeriodicWriter"])
        self.assertEqual(self.order(default_trainer_hooks(False)), [
            "NonFiniteLossGuard", "IterationTimer", "LRScheduler", "ReplicaSyncCheck", None,
            "EvalHook"])
        self.assertEqual(self.order(default_trainer_hooks(True), world_size=1), [
            "NonFiniteLossGuard", "IterationTimer", "LRScheduler", None, "PeriodicCheckpointer",
            "EvalHook", "PeriodicWriter"])


class TestLaunchPath(unittest.TestCase):
    """Which launcher starts CPU processes: detectron2's own ``launch`` where it can (a worker
    that picks GLOO without CUDA and ``comm.create_local_process_group``: upstream main), the
    plugin's minimal worker otherwise (v0.6)."""

    def test_capability_check(self):
        from unittest import mock

        import importlib

        from detectron2.utils import comm

        launch_module = importlib.import_module("frcnn_plugin.engine.launch")
        d2_launch = importlib.import_module("detectron2.engine.launch")

        def worker_with_gloo(has_gpu):
            return "NCCL" if has_gpu else "GLOO"

        def worker_nccl_only():
            return "NCCL"

        with mock.patch.object(comm, "create_local_process_group", create=True), \
                mock.patch.object(d2_launch, "_distributed_worker", worker_with_gloo):
            self.assertTrue(launch_module.detectron2_launches_cpu_processes())
        with mock.patch.object(comm, "create_local_process_group", create=True), \
                mock.patch.object(d2_launch, "_distributed_worker", worker_nccl_only):
            self.assertFalse(launch_module.detectron2_launches_cpu_processes())
        installed = launch_module.detectron2_launches_cpu_processes()
        self.assertEqual(installed, "GLOO" in d2_launch._distributed_worker.__code__.co_consts)
        if not hasattr(comm, "create_local_process_group"):  # v0.6
            self.assertFalse(installed)

    def test_cpu_job_through_detectron2_launch_where_it_can(self):
        """Without CUDA and with a capable detectron2, detectron2's ``launch`` gets a picklable
        per-process call that sets the threads, runs the function and waits for the others."""
        import importlib
        import pickle
        from unittest import mock

        launch_module = importlib.import_module("frcnn_plugin.engine.launch")

        calls = []
        with mock.patch.object(launch_module, "detectron2_launches_cpu_processes",
                               return_value=True), \
                mock.patch("torch.cuda.is_available", return_value=False), \
                mock.patch.object(launch_module, "d2_launch",  # detectron2.engine.launch
                                  lambda *a, **k: calls.append((a, k))):
            launch_module.launch(fail_on_rank_1, 2, dist_url="auto", args=("x",))
        (args, kwargs), = calls
        self.assertIsInstance(args[0], launch_module._CPUProcessMain)
        self.assertIs(pickle.loads(pickle.dumps(args[0])).main_func, fail_on_rank_1)
        self.assertEqual((args[1], kwargs["args"]), (2, ("x",)))
        self.assertTrue(kwargs["dist_url"].startswith("tcp://127.0.0.1:"))


def test_default_trainer_wraps_cpu_models_without_device_ids_then_is_restored():
    """Multi-process on CPUs only, and only while ``DefaultTrainer.__init__`` runs, detectron2's
    ``create_ddp_model`` is called without ``device_ids``; afterwards (also after an error) it
    is detectron2's own again."""
    from unittest import mock

    from detectron2.engine import defaults

    from frcnn_plugin.engine import trainer as trainer_module

    original = defaults.create_ddp_model
    calls = []
    with mock.patch.object(trainer_module, "create_ddp_model",
                           lambda model, **kw: calls.append(kw) or model), \
            mock.patch.object(trainer_module.comm, "get_world_size", return_value=2):
        with trainer_module._cpu_ddp_in_default_trainer("cuda"):
            assert defaults.create_ddp_model is original
        with pytest.raises(ValueError, match="in __init__"):
            with trainer_module._cpu_ddp_in_default_trainer("cpu"):
                assert defaults.create_ddp_model("model", broadcast_buffers=False) == "model"
                raise ValueError("in __init__")
    assert defaults.create_ddp_model is original
    assert calls == [{"broadcast_buffers": False, "device_ids": None}]
