"""Run an exported detector (TorchScript or ONNX, written by ``tools/export_model.py``) as the
eager model is run: a callable on detectron2's list of input dicts that returns
``[{"instances": Instances}]``, so :class:`~frcnn_plugin.predict.BatchPredictor`, the export's
check and ``tools/predict.py --backend`` use it in place of the model.
"""
import io
import json
import os
import warnings
from typing import Dict, List, Optional

import numpy as np
import torch

from detectron2.structures import Boxes, Instances

from ..errors import CheckpointError, ConfigError, MissingFileError
from .exporter import FORMATS, METADATA_KEY, METADATA_VERSION, quiet_deprecations

__all__ = ["BACKENDS", "ExportedModel", "TorchScriptModel", "OnnxModel", "load_exported",
           "check_metadata"]

BACKENDS = ("eager",) + FORMATS


class ExportedModel:
    """An exported detector: ``model(batched_inputs)`` runs it one image at a time.

    Attributes:
        path (str): the file.
        metadata (dict): the export's metadata (:func:`~frcnn_plugin.export.exporter.
            export_metadata`).
    """

    format = None
    is_exported = True  # the benchmark's marker
    device = torch.device("cpu")  # where the inputs go (TorchScript on CUDA: its device)

    def __init__(self, path: str, metadata: Dict):
        self.path = path
        self.metadata = metadata

    # detectron2's inference_context (inference_on_dataset) saves model.training, calls
    # model.eval() and restores with model.train(saved): an exported graph is always in eval mode
    training = False

    def eval(self):  # BatchPredictor calls model.eval()
        return self

    def train(self, mode: bool = True):
        if mode:
            raise ValueError("An exported model runs inference only; allowed: train(False), "
                             "eval()")
        return self

    def run(self, image: torch.Tensor, height: int, width: int):
        """(boxes, scores, classes) tensors of one image."""
        raise NotImplementedError

    def __call__(self, batched_inputs: List[Dict]) -> List[Dict[str, Instances]]:
        outputs = []
        for x in batched_inputs:
            height = int(x.get("height", x["image"].shape[-2]))
            width = int(x.get("width", x["image"].shape[-1]))
            boxes, scores, classes = self.run(x["image"].float(), height, width)
            instances = Instances((height, width))
            instances.pred_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32))
            instances.scores = torch.as_tensor(scores, dtype=torch.float32)
            instances.pred_classes = torch.as_tensor(classes, dtype=torch.int64)
            outputs.append({"instances": instances})
        return outputs


class TorchScriptModel(ExportedModel):
    """A traced TorchScript file, run by ``torch.jit.load``."""

    format = "torchscript"

    def __init__(self, path: str, device: str = "cpu", data: Optional[bytes] = None):
        extra = {METADATA_KEY + ".json": ""}
        try:
            source = path if data is None else io.BytesIO(data)
            with warnings.catch_warnings():
                quiet_deprecations()
                self.module = torch.jit.load(source, map_location=device, _extra_files=extra)
        except (RuntimeError, ValueError) as e:
            raise CheckpointError(
                "Cannot read {} as TorchScript ({}); allowed: a model.ts written by "
                "tools/export_model.py --format torchscript".format(path, _first_line(e)))
        self.device = torch.device(device)
        super().__init__(path, _parse_metadata(path, extra[METADATA_KEY + ".json"]))

    def run(self, image, height, width):
        with torch.no_grad():
            boxes, scores, classes = self.module(
                torch.tensor(height), image.to(self.device), torch.tensor(width))
        return boxes.cpu(), scores.cpu(), classes.cpu()


class OnnxModel(ExportedModel):
    """An ONNX file, run by onnxruntime on the CPU."""

    format = "onnx"

    def __init__(self, path: str, data: Optional[bytes] = None):
        try:
            import onnxruntime  # deferred: optional (frcnn_plugin[export])
        except ImportError:
            raise ConfigError(
                "--backend onnx needs onnxruntime, which is not installed; allowed: pip install "
                "onnxruntime (or frcnn_plugin[export]), or --backend torchscript / eager")
        try:
            self.session = onnxruntime.InferenceSession(
                path if data is None else data, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own classes (InvalidProtobuf, Fail ...)
            raise CheckpointError(
                "Cannot read {} as ONNX ({}); allowed: a model.onnx written by "
                "tools/export_model.py --format onnx".format(path, _first_line(e)))
        props = self.session.get_modelmeta().custom_metadata_map
        super().__init__(path, _parse_metadata(path, props.get(METADATA_KEY, "")))

    def run(self, image, height, width):
        feed = onnx_feed(image, height, width)
        boxes, scores, classes = self.session.run(list(self.metadata["outputs"]), feed)
        return torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)


def onnx_feed(image: torch.Tensor, height: int, width: int) -> Dict[str, np.ndarray]:
    """An exported ONNX model's inputs for one image: ``image`` the resized (C, H, W) tensor
    (fed as float32), ``height`` / ``width`` the original size."""
    return {"height": np.array(height, dtype=np.int64),
            "image": image.detach().cpu().numpy().astype(np.float32),
            "width": np.array(width, dtype=np.int64)}


def _first_line(error) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _parse_metadata(path, text) -> Dict:
    try:
        metadata = json.loads(text) if text else None
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("version") != METADATA_VERSION:
        raise CheckpointError(
            "{} has no frcnn_plugin export metadata (version {}); allowed: a file written by "
            "tools/export_model.py".format(path, METADATA_VERSION))
    return metadata


def load_exported(path: str, backend: str, device: str = "cpu",
                  data: Optional[bytes] = None) -> ExportedModel:
    """Load ``path`` (or, if given, its bytes ``data``) for ``backend`` ("torchscript" or
    "onnx").

    Raises:
        MissingFileError: no such file.
        CheckpointError: not a file of that format written by ``tools/export_model.py``.
        ConfigError: an unknown backend; onnx without onnxruntime.
    """
    if backend not in FORMATS:
        raise ConfigError("--backend {!r} runs no exported file; allowed: {}".format(
            backend, ", ".join(FORMATS)))
    if data is None and not os.path.isfile(path):
        raise MissingFileError("Exported model not found: {}; allowed: a file written by "
                               "tools/export_model.py --format {}".format(path, backend))
    if backend == "onnx":
        return OnnxModel(path, data)
    return TorchScriptModel(path, device, data)


def check_metadata(model: ExportedModel, cfg):
    """Refuse a config whose test-time input differs from the one the file was exported with
    (the exported model takes the resized image, so the resize must be the same).

    Raises:
        ConfigError: INPUT.FORMAT, INPUT.MIN_SIZE_TEST or INPUT.MAX_SIZE_TEST differ.
    """
    meta = model.metadata
    expected = {"INPUT.FORMAT": meta.get("input_format"),
                "INPUT.MIN_SIZE_TEST": meta.get("min_size_test"),
                "INPUT.MAX_SIZE_TEST": meta.get("max_size_test")}
    actual = {"INPUT.FORMAT": cfg.INPUT.FORMAT, "INPUT.MIN_SIZE_TEST": cfg.INPUT.MIN_SIZE_TEST,
              "INPUT.MAX_SIZE_TEST": cfg.INPUT.MAX_SIZE_TEST}
    bad = ["{}={!r} (the file: {!r})".format(k, actual[k], v) for k, v in expected.items()
           if v is not None and actual[k] != v]
    if bad:
        raise ConfigError(
            "{} was exported with other input settings than the config's: {}; allowed: the "
            "config the model was exported with, or set those keys to the file's "
            "values".format(model.path, ", ".join(bad)))
