#!/usr/bin/env python
"""frcnn_plugin: the classic VGG16 Faster R-CNN as registered detectron2 components.

detectron2 itself is not on PyPI and therefore not in ``install_requires``: install it from
source, or let ``tools/setup_env.sh`` (``make test`` / ``make demo``) do it.
"""
import os
import re

from setuptools import find_packages, setup


def get_version():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frcnn_plugin", "__init__.py")
    with open(path) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


setup(
    name="frcnn_plugin",
    version=get_version(),
    description="Faster R-CNN (Ren et al., 2015) with a VGG16 backbone as detectron2 components",
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["frcnn_plugin", "frcnn_plugin.*"]),
    # torch 2.0 and its torchvision 0.15 run on Python 3.8 - 3.11; the code uses no newer syntax
    python_requires=">=3.8",
    install_requires=[
        # The oldest torch the code runs on: 2.0, for torch.optim.Optimizer.
        # register_step_pre_hook (the trainer's non-finite-loss guard) and torch.device as a
        # context manager (the anchor analysis builds the backbone on the meta device); older
        # needs are met too (torch.load(weights_only=) 1.13, torch.meshgrid(indexing=) 1.10).
        "torch>=2.0",
        # torchvision is released in lockstep with torch: 0.15 goes with torch 2.0 (and has
        # the weights= API of torchvision.models, 0.13+).
        "torchvision>=0.15",
        "matplotlib>=3.5",  # matplotlib.colormaps (the inspection pictures)
        "fvcore>=0.1.5",
        "iopath>=0.1.7",
        "pycocotools>=2.0.2",
        "tensorboard",  # detectron2's DefaultTrainer writes TensorBoard event files
        # tools/predict.py: detectron2's Visualizer imports cv2, and OpenCV's VideoCapture /
        # VideoWriter read and write the videos (one library for both, as detectron2's own
        # demo); headless: no GUI libraries needed. pip picks a build that fits the numpy in
        # use (4.11 with the v0.6 fallback's numpy<1.24).
        "opencv-python-headless>=4.5",
        "tqdm>=4.29",  # tools/predict.py's progress bar (tqdm.write for warnings under it)
        # tools/test_robustness.py: what the imagecorruptions package needs besides numpy,
        # Pillow and OpenCV; imagecorruptions itself is installed with --no-deps by
        # tools/setup_env.sh (it requires opencv-python, not the headless build above).
        # Any scikit-image: frcnn_plugin.analysis.robustness adapts its gaussian() of 0.19+
        "scikit-image>=0.15",
        "scipy>=1.2.1",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6"],
        # tools/export_model.py --format onnx (metadata written with onnx) and
        # tools/predict.py --backend onnx (onnxruntime on the CPU); pip picks builds that fit
        # the numpy in use (also the v0.6 fallback's numpy<1.24)
        "export": ["onnx>=1.14", "onnxruntime>=1.16"],
    },
)
