#!/usr/bin/env python
"""The embedded demo: evaluate the untrained VGG16-BN Faster R-CNN on the generated shapes
data set, train it (from scratch, on CPU), evaluate it again, and print both AP tables.

    python tools/demo.py [--config-file configs/vgg16_frcnn_shapes_demo.yaml] [--debug] \
        [KEY VALUE ...]

Outputs go to the config's OUTPUT_DIR (default output/shapes_demo); the untrained model's
evaluation to OUTPUT_DIR/untrained. Extra KEY VALUE pairs override the config in both runs.
An OUTPUT_DIR that holds an earlier run (a demo run before) is refused before any work;
``--overwrite`` trains again there (the old checkpoints and results are deleted).
A user's mistake (a bad key or value, a missing file) ends with one ``error: ...`` paragraph and
exit status 2; ``--debug`` (or ``FRCNN_DEBUG=1``) shows the traceback.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from frcnn_plugin.cli import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    Terminated,
    add_debug_flag,
    load_config,
    run_cli,
)
from frcnn_plugin.outputs import check_run_dir

HERE = os.path.dirname(os.path.abspath(__file__))


def run(argv):
    """Run tools/train_net.py; on failure exit with its status (it printed its error)."""
    cmd = [sys.executable, os.path.join(HERE, "train_net.py")] + argv
    print("+ " + " ".join(cmd), flush=True)
    status = subprocess.run(cmd).returncode
    if status in (EXIT_INTERRUPTED, EXIT_TERMINATED):  # it printed what it kept
        raise Terminated() if status == EXIT_TERMINATED else KeyboardInterrupt()
    if status == EXIT_USER_ERROR:
        sys.exit(status)  # train_net printed the one error paragraph
    if status != 0:
        print("demo: tools/train_net.py failed with exit status {} (see above)".format(status),
              file=sys.stderr)
        sys.exit(status)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", default=os.path.join(
        HERE, "..", "configs", "vgg16_frcnn_shapes_demo.yaml"))
    parser.add_argument("--overwrite", action="store_true",
                        help="train again in an OUTPUT_DIR that holds an earlier run")
    add_debug_flag(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    out = cfg.OUTPUT_DIR
    check_run_dir(out, "OUTPUT_DIR", overwrite=args.overwrite)  # before any work
    untrained_dir = os.path.join(out, "untrained")
    flags = ["--config-file", args.config_file] + (["--debug"] if args.debug else [])

    start = time.time()
    run(flags + ["--eval-only", *args.opts, "MODEL.WEIGHTS", "", "OUTPUT_DIR", untrained_dir])
    run(flags + (["--overwrite"] if args.overwrite else []) + args.opts)
    minutes = (time.time() - start) / 60

    with open(os.path.join(untrained_dir, "eval_results.json")) as f:
        before = json.load(f)["bbox"]
    with open(os.path.join(out, "eval_results.json")) as f:
        after = json.load(f)["bbox"]
    keys = ["AP", "AP50", "AP75"]
    print("\nDemo ({:.1f} min): VGG16-BN Faster R-CNN on {} -> {}".format(
        minutes, ", ".join(cfg.DATASETS.TRAIN), ", ".join(cfg.DATASETS.TEST)))
    print("| model     | " + " | ".join("{:>6}".format(k) for k in keys) + " |")
    print("|-----------|" + "|".join("-" * 8 for _ in keys) + "|")
    for name, res in (("untrained", before), ("trained", after)):
        print("| {:9} | ".format(name) + " | ".join("{:6.2f}".format(res[k]) for k in keys) + " |")
    print("Checkpoint: {}".format(os.path.join(out, "model_final.pth")))
    if not after["AP50"] > before["AP50"]:
        sys.exit("The trained model is not better than the untrained one (AP50 {:.2f} <= {:.2f})"
                 .format(after["AP50"], before["AP50"]))


if __name__ == "__main__":
    run_cli(main)
