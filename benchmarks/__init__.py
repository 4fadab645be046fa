"""The benchmark lab: speed, memory and accuracy of the plugin side by side with torchvision's
FasterRCNN and detectron2's built-in RPN / StandardROIHeads (issue 6), and the accuracy
ablation; driven by ``tools/benchmark.py`` and ``tools/ablate_accuracy.py``.

Not part of the installed ``frcnn_plugin`` (``pip install .`` leaves it out): the tools run from
the repository's root put that folder on ``sys.path``, as the tests do. The modules, each
importing only those listed before it:

* :mod:`.stats`: summary statistics, peak memory, machine facts;
* :mod:`.inputs`: data-set inputs, synthetic COCO-shaped data;
* :mod:`.peers`: the peers, built from the plugin's config with identical settings;
* :mod:`.tricks`: the inference variants as models (tricks, registered backends);
* :mod:`.measure`: timing of training, inference and the data loader, stage breakdown,
  isolated worker processes;
* :mod:`.accuracy`: same data and schedule for every model, COCO AP;
* :mod:`.ablation`: which design differences cost accuracy (``tools/ablate_accuracy.py``);
* :mod:`.variants`: the variants task: AP and latency of each inference variant, against the
  plugin's and torchvision's fp32;
* :mod:`.scaling`: how time and peak memory grow with the input size, the test proposals and
  the GT boxes per image;
* :mod:`.suite`: one run (ratios, targets);
* :mod:`.report`: its Markdown tables.
"""
from .peers import (  # noqa: F401
    MODEL_KINDS,
    TorchvisionFasterRCNN,
    build_benchmark_model,
    build_torchvision_peer,
    d2_builtin_config,
)
from .report import format_report  # noqa: F401
from .suite import TARGETS, TASKS, BenchmarkOptions, run_benchmark  # noqa: F401
