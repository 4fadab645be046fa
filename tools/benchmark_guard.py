#!/usr/bin/env python
"""Cost of the non-finite loss guard per training iteration: detectron2's SimpleTrainer on a
small model with 5 loss terms (the detector's number), with and without
``NonFiniteLossGuard``, on the CPU.

    python tools/benchmark_guard.py [--iters 3000] [--rounds 5] [--threads 1]

Prints the median time per iteration of each and the difference. The guard makes one
device-to-host copy per iteration and no collective; on a GPU its cost is that one sync.
"""
import argparse
import logging
import statistics
import time

import torch
from torch import nn

from detectron2.engine import SimpleTrainer

from frcnn_plugin.cli import add_debug_flag, int_in_range, run_cli
from frcnn_plugin.engine.train_loop import NonFiniteLossGuard


class FiveLosses(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, batch):
        y = self.fc(batch[0]["x"])
        return {"loss_{}".format(i): y[i].pow(2) for i in range(5)}


def batches():
    x = torch.randn(8)
    while True:
        yield [{"x": x}]


def time_per_iteration(guarded: bool, iters: int) -> float:
    model = FiveLosses()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    trainer = SimpleTrainer(model, batches(), optimizer)
    if guarded:
        trainer.register_hooks([NonFiniteLossGuard("error")])
    start = time.perf_counter()
    trainer.train(0, iters)
    return (time.perf_counter() - start) / iters


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int_in_range(1), default=3000,
                        help="iterations per round")
    parser.add_argument("--rounds", type=int_in_range(1), default=5,
                        help="rounds (median reported)")
    parser.add_argument("--threads", type=int_in_range(1), default=1, help="torch threads")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    times = {False: [], True: []}
    for _ in range(args.rounds):  # interleaved rounds
        for guarded in times:
            times[guarded].append(time_per_iteration(guarded, args.iters))
    plain, guarded = (statistics.median(times[k]) * 1e6 for k in (False, True))
    print("SimpleTrainer          {:8.1f} us/iteration".format(plain))
    print("+ NonFiniteLossGuard   {:8.1f} us/iteration".format(guarded))
    print("guard                  {:8.1f} us/iteration (median of {} x {} iterations)".format(
        guarded - plain, args.rounds, args.iters))


if __name__ == "__main__":
    run_cli(main)
