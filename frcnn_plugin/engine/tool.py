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
* :func:`check_output`: the output folder before anything is written: writable, and a fresh
  run is refused in a folder that holds a finished or interrupted run unless ``--resume`` or
  ``--overwrite`` (:func:`frcnn_plugin.outputs.check_run_dir`);
* :func:`setup_output`: detectron2's ``default_setup`` (logging, seed), with the config saved as
  ``config.yaml`` only once the run is set to start (:func:`save_config`), and with
  ``--overwrite`` the old run's files set aside, deleted when the new run starts
  (:func:`start_run`), put back if it fails to start;
* :func:`interrupt_note`: what an interrupt (Ctrl-C, SIGTERM) says: the iteration reached, the
  checkpoint kept, the command that continues;
* :func:`save_results`: ``eval_results.json`` in the output folder, written atomically.
"""
import argparse
import contextlib
import glob
import logging
import os
import shutil
import tempfile

from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm

from ..errors import ConfigError, UserError, add_debug_flag, command_line
from ..errors import interrupt_note as _interrupt_note
from ..outputs import RUN_FILES, check_run_dir, existing_results, write_bytes, write_json
from .launch import DistributedTrainingError, launch

__all__ = ["argument_parser", "check_output", "interrupt_note", "process_main", "run_tool",
           "save_config", "save_results", "setup_output", "start_run"]

CONFIG_FILE = "config.yaml"

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
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start a fresh run in an output folder that holds an earlier run: its checkpoints, "
             "metrics.json and eval_results.json are deleted when the new run starts (without "
             "it such a folder is refused; --resume continues the run)")
    add_debug_flag(parser)  # before the overrides
    return parser


def check_output(output_dir, key, args):
    """The run's output folder, before anything is written (every process, and the launcher
    before it starts them): see :func:`frcnn_plugin.outputs.check_run_dir`. Returns what the
    folder holds (None: no run)."""
    if args.resume and getattr(args, "overwrite", False):
        raise ConfigError("--resume and --overwrite: choose one; allowed: --resume to continue "
                          "the run in {}={}, --overwrite to start again there".format(
                              key, output_dir))
    return check_run_dir(output_dir, key, resume=args.resume,
                         overwrite=getattr(args, "overwrite", False), eval_only=args.eval_only)


def setup_output(cfg, args, output_dir):
    """detectron2's ``default_setup(cfg, args)`` (folder, logging, environment, seed), except
    that the ``config.yaml`` it writes is held back: the folder's earlier ``config.yaml`` (of the
    run a ``--resume`` continues) stays until :func:`save_config` writes the returned text, once
    the run is set to start. Returns the text (None on other processes)."""
    path = os.path.join(output_dir, CONFIG_FILE)
    old = None
    if comm.is_main_process() and os.path.isfile(path):
        with open(path, "rb") as f:
            old = f.read()
    default_setup(cfg, args)
    if not comm.is_main_process():
        return None
    new = None
    if os.path.isfile(path):
        with open(path, "rb") as f:
            new = f.read()
        if old is None:
            os.remove(path)
        else:
            write_bytes(path, old)
    return new


def save_config(output_dir, text):
    """Write the held-back ``config.yaml`` (main process only), atomically."""
    if text is not None and comm.is_main_process():
        write_bytes(os.path.join(output_dir, CONFIG_FILE), text)


@contextlib.contextmanager
def start_run(output_dir, overwrite, config_text):
    """Around building the trainer and loading its weights: with ``overwrite``, the earlier
    run's files (:data:`frcnn_plugin.outputs.RUN_FILES` and ``model_*.pth``) are moved aside
    first (detectron2's metrics writer appends to a ``metrics.json`` it finds), put back if the
    run fails to start, deleted once it has started; then ``config.yaml`` is written. Files the
    failed start created (TensorBoard events) are removed; ``log.txt`` keeps its lines."""
    aside = None
    before = set(os.listdir(output_dir)) if os.path.isdir(output_dir) else set()
    if overwrite and comm.is_main_process():
        found = existing_results(output_dir, RUN_FILES + ("model_*.pth",))
        if found:
            aside = tempfile.mkdtemp(prefix=".replaced-run-", dir=output_dir)
            for name in found:
                os.replace(os.path.join(output_dir, name), os.path.join(aside, name))
    try:
        yield
    except BaseException:
        if comm.is_main_process():  # what the failed start created (metrics, events files)
            for name in set(os.listdir(output_dir)) - before - {"log.txt"}:
                path = os.path.join(output_dir, name)
                if os.path.isfile(path) and path != aside:
                    os.remove(path)
        if aside:
            for name in os.listdir(aside):
                os.replace(os.path.join(aside, name), os.path.join(output_dir, name))
            os.rmdir(aside)
        raise
    if aside:
        logger.info("--overwrite: deleted the earlier run's %s", ", ".join(
            sorted(os.listdir(aside))))
        shutil.rmtree(aside)
    save_config(output_dir, config_text)


def _last_checkpoint(output_dir):
    try:
        with open(os.path.join(output_dir, "last_checkpoint")) as f:
            return os.path.join(output_dir, f.read().strip())
    except OSError:
        return None


def interrupt_note(args, output_dir, state, weights_key):
    """The note an interrupt of a training tool prints (:class:`frcnn_plugin.errors.
    interrupt_note`): the iteration reached, what is kept, the command that continues.
    ``state``: a dict the tool fills ("trainer" once built); ``weights_key``: how the tool's
    overrides name the weights ("MODEL.WEIGHTS ", "train.init_checkpoint=")."""
    argv = getattr(args, "argv", None) or []

    def note():
        trainer = state.get("trainer")
        final = os.path.join(output_dir, "model_final.pth")
        if args.eval_only:
            return ("the evaluation was interrupted: eval_results.json not written; run the "
                    "same command again")
        if trainer is None:
            return "stopped before training started: nothing of this run was written"
        where = "training stopped at iteration {} of {}".format(
            getattr(trainer, "iter", 0), getattr(trainer, "max_iter", "?"))
        if os.path.isfile(final) and getattr(trainer, "iter", 0) + 1 >= getattr(
                trainer, "max_iter", 0):
            return ("training finished (kept: {}); the evaluation was interrupted: "
                    "eval_results.json not written; evaluate with: {} {}{}".format(
                        final, command_line(argv, add=["--eval-only"],
                                            drop=["--resume", "--overwrite"]),
                        weights_key, final))
        last = _last_checkpoint(output_dir)
        if last and os.path.isfile(last):
            return "{}; kept: {} (the last checkpoint) and the logs in {}; continue with: {}"\
                .format(where, last, output_dir, command_line(argv, add=["--resume"],
                                                      drop=["--overwrite"]))
        return ("{}; no checkpoint was written yet; start again with: {}".format(
            where, command_line(argv, add=["--overwrite"], drop=["--resume"])))

    return _interrupt_note(note)


def save_results(output_dir, results):
    """Write the evaluation results to ``output_dir/eval_results.json`` (main process only),
    atomically."""
    if results and comm.is_main_process():
        path = write_json(os.path.join(output_dir, "eval_results.json"), results)
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
    args.argv = list(argv)  # for the command that continues an interrupted run
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
