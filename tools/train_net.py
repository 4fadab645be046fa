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
A user's mistake (bad key or value, missing or corrupt file) ends with one ``error: ...``
paragraph and exit status 2, also when it happens in one of several processes; ``--debug`` (or
``FRCNN_DEBUG=1``) shows the traceback instead. See the README (Reliability) for resuming,
multi-process training and bad data.
"""

import argparse
import glob
import json
import logging
import os
import tempfile

import torch

import detectron2.utils.comm as comm
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils.logger import setup_logger

import frcnn_plugin  # noqa: F401  (registers the components and data sets)
from frcnn_plugin.cli import UserError, add_debug_flag, run_cli
from frcnn_plugin.config import load_frcnn_config
from frcnn_plugin.config_checks import check_output_dir, config_errors, validate_frcnn_config
from frcnn_plugin.engine import AtomicCheckpointer, DistributedTrainingError, Trainer, launch

logger = logging.getLogger("frcnn_plugin.train_net")


def argument_parser():
    parser = default_argument_parser()
    parser.add_argument(
        "--config", dest="config_file", metavar="FILE", help="alias of --config-file"
    )
    parser.add_argument(
        "--num-processes",
        dest="num_gpus",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="alias of --num-gpus: processes per machine; one per GPU with CUDA (NCCL), "
        "otherwise N CPU processes (GLOO backend)",
    )
    add_debug_flag(parser)  # before the KEY VALUE overrides
    return parser


def load_config(args):
    """get_cfg -> add_frcnn_config -> merge file -> merge opts -> checks -> freeze (no side
    effects: nothing is written)."""
    cfg = load_frcnn_config(args.config_file, args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning(
            "MODEL.DEVICE=%s but no GPU: using cpu", cfg.MODEL.DEVICE
        )
        cfg.MODEL.DEVICE = "cpu"
    validate_frcnn_config(cfg)
    cfg.freeze()
    return cfg


def setup(args):
    """get_cfg -> add_frcnn_config -> merge file -> merge opts -> freeze -> default_setup."""
    cfg = load_config(args)
    check_output_dir(cfg.OUTPUT_DIR)
    default_setup(cfg, args)
    # the plugin's own loggers (skipped samples, resumed state, replica checks) to the console
    # and OUTPUT_DIR/log.txt, as default_setup does for detectron2's
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="frcnn_plugin")
    return cfg


def save_results(cfg, results):
    """Write the evaluation results to OUTPUT_DIR/eval_results.json (main process only)."""
    if results and comm.is_main_process():
        path = os.path.join(cfg.OUTPUT_DIR, "eval_results.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, path)
        logger.info("Evaluation results written to %s", path)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        with config_errors(cfg):
            model = Trainer.build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
                cfg.MODEL.WEIGHTS, resume=args.resume
            )
        else:
            logger.warning("--eval-only with MODEL.WEIGHTS empty: evaluating an untrained model")
        from frcnn_plugin.modeling.quantize import prepare_for_inference

        prepare_for_inference(cfg, model.eval())  # FC_INT8, BF16_AUTOCAST
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        save_results(cfg, res)
        return res

    with config_errors(cfg):
        trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    res = trainer.train()
    save_results(cfg, res)
    return res


def _process_main(args, error_dir):
    """``main`` in one process of a job; a user error of a process of a multi-process job is
    also written to ``error_dir``, for the launching process to report it."""
    try:
        return main(args)
    except UserError as e:
        if comm.get_world_size() > 1:
            path = os.path.join(error_dir, "rank{:05d}.txt".format(comm.get_rank()))
            with open(path, "w") as f:
                f.write("{} (in process {} of {}; the others were stopped)".format(
                    e, comm.get_rank(), comm.get_world_size()))
        raise


def _cli(argv):
    parser = argument_parser()
    args = parser.parse_args(argv)
    if args.num_gpus < 1 or args.num_machines < 1:
        parser.error("--num-gpus {} --num-machines {}: allowed: integers >= 1".format(
            args.num_gpus, args.num_machines))
    if not 0 <= args.machine_rank < args.num_machines:
        parser.error("--machine-rank {}: allowed: 0 ... --num-machines - 1 = {}".format(
            args.machine_rank, args.num_machines - 1))
    print("Command Line Args:", args)
    if args.num_gpus * args.num_machines > 1:
        load_config(args)  # a bad config fails here, before any process is started
    with tempfile.TemporaryDirectory(prefix="frcnn-train-errors-") as error_dir:
        try:
            return launch(
                _process_main,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(args, error_dir),
            )
        except DistributedTrainingError as e:
            reports = sorted(glob.glob(os.path.join(error_dir, "rank*.txt")))
            if not reports:
                raise
            with open(reports[0]) as f:
                raise UserError(f.read()) from e


def cli(argv=None):
    """The command line: user errors as one ``error:`` paragraph, exit status 2."""
    return run_cli(_cli, argv)


if __name__ == "__main__":
    cli()
