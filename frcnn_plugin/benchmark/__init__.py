"""Speed, memory and accuracy of the plugin side by side with torchvision's FasterRCNN and
detectron2's built-in RPN / StandardROIHeads (issue 6); driven by ``tools/benchmark.py``.

* :mod:`.peers`: the peers, built from the plugin's config with identical settings;
* :mod:`.inputs`: data-set inputs, synthetic COCO-shaped data;
* :mod:`.measure`: timing of training, inference and the data loader, stage breakdown,
  isolated worker processes;
* :mod:`.accuracy`: same data and schedule for every model, COCO AP;
* :mod:`.variants`: inference variants (fp32, channels-last, SVD, int8, bf16, registered
  backends) with AP and latency, against the plugin's and torchvision's fp32;
* :mod:`.scaling`: how time and peak memory grow with the input size, the test proposals and
  the GT boxes per image;
* :mod:`.suite`: one run (ratios, targets) and its report.
"""
from .peers import (  # noqa: F401
    MODEL_KINDS,
    TorchvisionFasterRCNN,
    build_benchmark_model,
    build_torchvision_peer,
    d2_builtin_config,
)
from .suite import TARGETS, TASKS, BenchmarkOptions, format_report, run_benchmark  # noqa: F401
