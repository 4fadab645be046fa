"""What the training tools share: ``tools/train_net.py`` (YAML configs) and
``tools/lazy_train_net.py`` (Python configs) parse the same flags, start their processes the same
way, report a user's mistake from any process as one ``error:`` paragraph, and write their
evaluation results the same way; only how they read a config and build a trainer differs.

* :func:`argument_parser`: detectron2's ``default_argument_parser`` plus ``--config`` (alias of
  ``--config-file``), ``--num-processes`` (alias of ``--num-gpus``) and ``--debug``;
* :func:`run_tool`: checks the flags, runs ``preflight(args)`` (a bad config fails before any
  process starts) and ``main(args)`` in ``--num-gpus`` processes per machine
  (:func:`~frcnn_plugin.engine.launch.launch`: GPUs with NCCL, else CPU processes with GLOO);
  a user error in one of several processes is reported by the launching process;
* :func:`save_results`: ``eval_results.json`` in the output folder, written atomically.
"""
import argparse
import glob
import json
import logging
import os
import tempfile

from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from ..errors import UserError, add_debug_flag
from .launch import DistributedTrainingError, launch

__all__ = ["argument_parser", "process_main", "run_tool", "save_results"]

logger = logging.getLogger("frcnn_plugin.train_net")


def argument_parser(epilog=None):
    """detectron2's training flags, the plugin's aliases and ``--debug``, then the config
    overrides (``opts``: ``KEY VALUE`` pairs for YAML, ``key=value`` for Python configs)."""
    parser = default_argument_parser(epilog)
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
    add_debug_flag(parser)  # before the overrides
    return parser


def save_results(output_dir, results):
    """Write the evaluation results to ``output_dir/eval_results.json`` (main process only)."""
    if results and comm.is_main_process():
        path = os.path.join(output_dir, "eval_results.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, path)
        logger.info("Evaluation results written to %s", path)


def process_main(main, args, error_dir):
    """``main(args)`` in one process of a job; a user error of a process of a multi-process job
    is also written to ``error_dir``, for the launching process to report it."""
    try:
        return main(args)
    except UserError as e:
        if comm.get_world_size() > 1:
            path = os.path.join(error_dir, "rank{:05d}.txt".format(comm.get_rank()))
            with open(path, "w") as f:
                f.write("{} (in process {} of {}; the others were stopped)".format(
                    e, comm.get_rank(), comm.get_world_size()))
        raise


def run_tool(parser, argv, main, preflight):
    """Parse ``argv``, check the process flags, and run ``main(args)`` in every process.

    Args:
        parser: from :func:`argument_parser`.
        main: a module-level (picklable) function of ``args``, run in each process.
        preflight: a function of ``args`` that loads and checks the config without side
            effects; run first when several processes are to start.
    """
    args = parser.parse_args(argv)
    if args.num_gpus < 1 or args.num_machines < 1:
        parser.error("--num-gpus {} --num-machines {}: allowed: integers >= 1".format(
            args.num_gpus, args.num_machines))
    if not 0 <= args.machine_rank < args.num_machines:
        parser.error("--machine-rank {}: allowed: 0 ... --num-machines - 1 = {}".format(
            args.machine_rank, args.num_machines - 1))
    print("Command Line Args:", args)
    if args.num_gpus * args.num_machines > 1:
        preflight(args)  # a bad config fails here, before any process is started
    with tempfile.TemporaryDirectory(prefix="frcnn-train-errors-") as error_dir:
        try:
            return launch(
                process_main,
                args.num_gpus,
                num_machines=args.num_machines,
                machine_rank=args.machine_rank,
                dist_url=args.dist_url,
                args=(main, args, error_dir),
            )
        except DistributedTrainingError as e:
            reports = sorted(glob.glob(os.path.join(error_dir, "rank*.txt")))
            if not reports:
                raise
            with open(reports[0]) as f:
                raise UserError(f.read()) from e
