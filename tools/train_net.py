#!/usr/bin/env python
"""Train and evaluate frcnn_plugin's detectors with detectron2's DefaultTrainer.

Examples::

    # the embedded demo: VGG16-BN Faster R-CNN from scratch on generated shapes, on CPU
    python tools/train_net.py --config configs/vgg16_frcnn_shapes_demo.yaml
    # the paper's COCO recipe on 8 GPUs
    python tools/train_net.py --config-file configs/vgg16_frcnn.yaml --num-gpus 8
    # evaluate a checkpoint
    python tools/train_net.py --config-file configs/vgg16_frcnn.yaml --eval-only \
        MODEL.WEIGHTS output/vgg16_frcnn_coco/model_final.pth

    # 2 CPU processes (GLOO backend) on a machine without CUDA
    python tools/train_net.py --config configs/vgg16_frcnn_shapes_demo.yaml --num-processes 2
    # continue an interrupted run from OUTPUT_DIR/last_checkpoint
    python tools/train_net.py --config configs/vgg16_frcnn_shapes_demo.yaml --resume

Flags are detectron2's (``--config-file``, with ``--config`` as an alias; ``--resume``,
``--eval-only``, ``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``) followed
by ``KEY VALUE`` config overrides. ``--num-gpus N`` is the number of processes per machine: one
per GPU with CUDA (NCCL), else N CPU processes (GLOO); ``--num-processes`` is an alias.
A fresh run (no ``--resume``) into an ``OUTPUT_DIR`` that holds a finished or interrupted run is
refused, naming it; ``--resume`` continues it, ``--overwrite`` starts again there (the old
checkpoints, metrics.json and eval_results.json are deleted when the new run starts).
``config.yaml`` is written once the run is set to start (after a ``--resume`` loaded its
checkpoint). A user's mistake (bad key or value, missing or corrupt file) ends with one
``error: ...`` paragraph and exit status 2, also when it happens in one of several processes;
``--debug`` (or ``FRCNN_DEBUG=1``) shows the traceback instead. Ctrl-C or SIGTERM ends with one
line (the iteration reached, the checkpoint kept, the command that continues), exit status 130
or 143. See the README (Reliability) for resuming,
multi-process training and bad data.
"""

import logging

import detectron2.utils.comm as comm
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

import frcnn_plugin  # noqa: F401  (registers the components and data sets)
from frcnn_plugin.cli import load_config as load_tool_config
from frcnn_plugin.cli import run_cli
from frcnn_plugin.config_checks import config_errors
from frcnn_plugin.engine import AtomicCheckpointer, Trainer
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
from frcnn_plugin.modeling.quantize import prepare_for_inference

logger = logging.getLogger("frcnn_plugin.train_net")

__all__ = ["argument_parser", "cli", "load_config", "main", "preflight", "setup"]


def load_config(args):
    """get_cfg -> add_frcnn_config -> merge file -> merge opts -> checks -> freeze (no side
    effects: nothing is written): :func:`frcnn_plugin.cli.load_config`."""
    return load_tool_config(args.config_file, args.opts)


def preflight(args):
    """The config and the output folder, checked before any process starts."""
    cfg = load_config(args)
    check_output(cfg.OUTPUT_DIR, "OUTPUT_DIR", args)
    return cfg


def setup(args):
    """load_config -> output folder check (a fresh run into a folder holding a run is refused
    without --resume / --overwrite) -> default_setup (logging, seed); the config is saved as
    OUTPUT_DIR/config.yaml once the run is set to start (``args.config_text`` until then; what
    the folder held: ``args.existing_run``)."""
    cfg = load_config(args)
    args.existing_run = check_output(cfg.OUTPUT_DIR, "OUTPUT_DIR", args)
    args.config_text = setup_output(cfg, args, cfg.OUTPUT_DIR)
    # the plugin's own loggers (skipped samples, resumed state, replica checks) to the console
    # and OUTPUT_DIR/log.txt, as default_setup does for detectron2's
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="frcnn_plugin")
    return cfg


def main(args):
    cfg = setup(args)
    state = {}
    with interrupt_note(args, cfg.OUTPUT_DIR, state, "MODEL.WEIGHTS "):
        if args.eval_only:
            with config_errors(cfg):
                model = Trainer.build_model(cfg)
            if cfg.MODEL.WEIGHTS:
                AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
                    cfg.MODEL.WEIGHTS, resume=args.resume
                )
            else:
                logger.warning("--eval-only with MODEL.WEIGHTS empty: evaluating an untrained "
                               "model")
            if not args.existing_run:  # a run's own config.yaml is kept
                save_config(cfg.OUTPUT_DIR, args.config_text)
            prepare_for_inference(cfg, model.eval())  # FC_INT8, TEST.AMP
            res = Trainer.test(cfg, model)
            if cfg.TEST.AUG.ENABLED:  # test-time augmentation, as detectron2's train_net.py
                res.update(Trainer.test_with_TTA(cfg, model))
            if comm.is_main_process():
                verify_results(cfg, res)
            save_results(cfg.OUTPUT_DIR, res)
            return res

        with start_run(cfg.OUTPUT_DIR, args.overwrite, args.config_text):
            with config_errors(cfg):
                trainer = Trainer(cfg)
            trainer.resume_or_load(resume=args.resume)
        state["trainer"] = trainer
        res = trainer.train()
        save_results(cfg.OUTPUT_DIR, res)
        return res


def _cli(argv):
    return run_tool(argument_parser(), argv, main, preflight=preflight)


def cli(argv=None):
    """The command line: user errors as one ``error:`` paragraph, exit status 2."""
    return run_cli(_cli, argv)


if __name__ == "__main__":
    cli()
