#!/usr/bin/env python
"""Train and evaluate a Python config (detectron2's LazyConfig) with the plugin's engine: the
counterpart of ``tools/train_net.py`` for configs such as ``configs/lazy/*.py`` and detectron2's
model-zoo Python configs, with detectron2's ``lazyconfig_train_net.py`` conventions.

Examples::

    # the embedded demo, the same run as tools/train_net.py with vgg16_frcnn_shapes_demo.yaml
    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py
    # key=value overrides (Hydra's syntax, as detectron2)
    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py \\
        train.max_iter=20 train.output_dir=output/try
    # evaluate a checkpoint
    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_coco.py --eval-only \\
        train.init_checkpoint=output/vgg16_frcnn_coco_lazy/model_final.pth
    # continue an interrupted run from train.output_dir/last_checkpoint; 2 CPU processes
    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py \\
        --resume --num-gpus 2

Flags as ``tools/train_net.py`` (``--config-file``/``--config``, ``--resume``, ``--eval-only``,
``--num-gpus``/``--num-processes``, ``--num-machines``, ``--machine-rank``, ``--dist-url``,
``--debug``, ``--overwrite``), then ``key=value`` overrides; an output folder holding a run is
refused for a fresh run, as there; an override keeps the type of the config's value
(``train.max_iter=abc`` is refused) and the schedule's counts their range. A user's mistake
(missing file, a key the config does not have, a bad value, a corrupt checkpoint, bad data) ends
with one ``error: ...`` paragraph and exit status 2, also from one of several processes; Ctrl-C
or SIGTERM with one line and the command that continues (exit status 130 / 143). Checkpoints are
written atomically with the optimizer state; ``train.nonfinite_loss`` ("error" or "skip") is the
non-finite loss policy;
evaluation uses ``dataloader.evaluator`` (the plugin's configs: by the data set's
``evaluator_type``). The whole engine is shared with ``tools/train_net.py``
(``frcnn_plugin.engine``).
"""
import logging

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import frcnn_plugin  # noqa: F401  (registers the components and data sets)
from frcnn_plugin.cli import load_config as load_tool_config
from frcnn_plugin.cli import run_cli
from frcnn_plugin.engine import AtomicCheckpointer
from frcnn_plugin.engine.lazy_trainer import (
    LazyTrainer,
    build_lazy_model,
    check_lazy_config,
    lazy_test,
    lazy_test_with_tta,
)
from frcnn_plugin.engine.tool import (
    argument_parser,
    check_output,
    interrupt_note,
    run_tool,
    save_config,
    save_results,
    setup_output,
    start_run,
)
from frcnn_plugin.engine.trainer import create_plugin_ddp_model

logger = logging.getLogger("frcnn_plugin.train_net")

__all__ = ["argument_parser", "cli", "load_config", "main", "preflight", "setup"]


def load_config(args):
    """LazyConfig.load -> key=value overrides -> checks (no side effects: nothing is written):
    :func:`frcnn_plugin.cli.load_config` of a Python config, then the keys this tool needs."""
    cfg = load_tool_config(args.config_file, args.opts, kind="python")
    check_lazy_config(cfg, eval_only=args.eval_only)
    return cfg


def preflight(args):
    """The config and the output folder, checked before any process starts."""
    cfg = load_config(args)
    check_output(cfg.train.output_dir, "train.output_dir", args)
    return cfg


def setup(args):
    """load_config -> output folder check (a fresh run into a folder holding a run is refused
    without --resume / --overwrite) -> detectron2's default_setup (logging, seed); the config is
    saved as OUTPUT/config.yaml once the run is set to start (``args.config_text`` until then)."""
    cfg = load_config(args)
    args.existing_run = check_output(cfg.train.output_dir, "train.output_dir", args)
    args.config_text = setup_output(cfg, args, cfg.train.output_dir)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="frcnn_plugin")
    return cfg


def main(args):
    cfg = setup(args)
    out, state = cfg.train.output_dir, {}
    with interrupt_note(args, out, state, "train.init_checkpoint="):
        if args.eval_only:
            model = build_lazy_model(cfg)
            model = create_plugin_ddp_model(model, cfg.train.device)
            weights = cfg.train.get("init_checkpoint", "")
            if weights:
                AtomicCheckpointer(model, save_dir=out).resume_or_load(
                    weights, resume=args.resume
                )
            else:
                logger.warning("--eval-only with train.init_checkpoint empty: evaluating an "
                               "untrained model")
            if not args.existing_run:  # a run's own config.yaml is kept
                save_config(out, args.config_text)
            res = lazy_test(cfg, model)
            res.update(lazy_test_with_tta(cfg, model))  # with test.aug.enabled=True
            save_results(out, res)
            return res

        with start_run(out, args.overwrite, args.config_text):
            trainer = LazyTrainer(cfg)
            trainer.resume_or_load(resume=args.resume)
        state["trainer"] = trainer
        res = trainer.train()
        save_results(out, res)
        return res


def _cli(argv):
    return run_tool(argument_parser(), argv, main, preflight=preflight)


def cli(argv=None):
    """The command line: user errors as one ``error:`` paragraph, exit status 2."""
    return run_cli(_cli, argv)


if __name__ == "__main__":
    cli()
