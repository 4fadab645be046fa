"""Predict on images and videos and write the results (``tools/predict.py``).

Outputs in the output folder:

* one picture per image, with its detections drawn by detectron2's ``Visualizer`` (class name
  and score), named as the image; one annotated ``.mp4`` per video;
* ``predictions.json``: COCO results format, a list of ``{"image_id", "category_id", "bbox"
  (XYWH, original-image pixels), "score"}`` (detectron2's ``instances_to_coco_json``), with
  ``category_id`` the data set's own id (through ``thing_dataset_id_to_contiguous_id``);
* ``predictions.jsonl``: one line per image or video frame: ``{"image_id", "file", "frame"
  (videos only), "width", "height", "detections": [{"class", "category_id", "score",
  "bbox"}]}``.

``image_id`` is the position of the image or frame in the input order, from 0 (a skipped image
keeps its number); with a data set (``tools/predict.py --dataset NAME``), the data set's own
``image_id`` of each image, so that ``tools/analyze_results.py`` evaluates the file. Only
detections with a score >= ``score_thresh`` are drawn and written.
An image that cannot be read is reported (a warning naming the file and why) and skipped.
"""
import json
import os
import sys
from typing import List, NamedTuple, Optional, Sequence, Tuple

from tqdm import tqdm

from detectron2.data.detection_utils import (
    convert_image_to_rgb,
    convert_PIL_to_numpy,
    read_image,
)
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils.visualizer import Visualizer
from PIL import Image, UnidentifiedImageError

from ..data.checks import load_dataset_dicts
from ..data.mappers import BAD_IMAGE_ERRORS
from ..errors import BadImageError, ConfigError, interrupt_note
from ..files import atomic_write
from ..outputs import check_output_dir, save_image
from .classes import ClassInfo, class_info
from .inputs import Source, check_outputs, expand_inputs, output_names
from .predictor import BatchPredictor
from .video import VideoReader, VideoWriter

__all__ = [
    "PREDICTIONS_JSON",
    "PREDICTIONS_JSONL",
    "Plan",
    "Summary",
    "plan_outputs",
    "run_predictions",
]

PREDICTIONS_JSON = "predictions.json"
PREDICTIONS_JSONL = "predictions.jsonl"


class Plan(NamedTuple):
    """The inputs and the files they will be written to."""

    sources: List[Source]
    outputs: List[str]
    json_file: str
    jsonl_file: str
    image_ids: Optional[dict] = None  # realpath -> image id (--dataset); None: 0, 1, 2, ...


class Summary:
    """What a run did: counts, and the files skipped with the reason."""

    def __init__(self):
        self.images = 0
        self.frames = 0
        self.videos = 0
        self.detections = 0
        self.skipped: List[Tuple[str, str]] = []

    def text(self, plan: Plan, score_thresh: float) -> str:
        lines = ["Predicted {} image(s) and {} frame(s) of {} video(s): {} detection(s) with "
                 "score >= {:g}.".format(self.images, self.frames, self.videos, self.detections,
                                         score_thresh)]
        if self.skipped:
            lines.append("Skipped {} unreadable file(s): {}.".format(
                len(self.skipped), "; ".join("{} ({})".format(p, r) for p, r in self.skipped)))
        lines.append("Wrote {}, {} and the pictures/videos to {}".format(
            os.path.basename(plan.json_file), os.path.basename(plan.jsonl_file),
            os.path.dirname(plan.json_file) or "."))
        return "\n".join(lines)


def plan_outputs(inputs: Sequence[str], output_dir: str, overwrite: bool = False,
                 dataset: Optional[str] = None) -> Plan:
    """Expand the inputs and name every output; refuse an output folder that cannot be
    written and existing outputs unless ``overwrite``, before any work (see
    :func:`~frcnn_plugin.outputs.check_output_dir` and
    :func:`~frcnn_plugin.predict.inputs.check_outputs`).

    Args:
        dataset (str or None): a registered data set whose images the inputs are: the results
            carry its image ids (so that ``tools/analyze_results.py --dataset`` reads them);
            an input that is not one of its images is an error. None: images are numbered
            0, 1, 2, ... in input order (video frames included).
    """
    check_output_dir(output_dir, "--output")
    sources = expand_inputs(inputs)
    outputs = [os.path.join(output_dir, n) for n in output_names(sources)]
    plan = Plan(sources, outputs, os.path.join(output_dir, PREDICTIONS_JSON),
                os.path.join(output_dir, PREDICTIONS_JSONL),
                dataset_image_ids(dataset, sources) if dataset else None)
    check_outputs(outputs + [plan.json_file, plan.jsonl_file], sources, overwrite)
    return plan


def dataset_image_ids(dataset: str, sources: Sequence[Source]) -> dict:
    """realpath of each image source -> its ``image_id`` in the registered ``dataset``.

    Raises:
        UnknownDatasetError: ``dataset`` is not registered.
        ConfigError: a video, or an image that is not one of the data set's.
    """
    ids = {os.path.realpath(d["file_name"]): d["image_id"] for d in load_dataset_dicts(dataset)}
    videos = [s.path for s in sources if s.kind != "image"]
    if videos:
        raise ConfigError("--dataset {}: {} is a video; allowed with --dataset: the data set's "
                          "image files".format(dataset, videos[0]))
    missing = [s.path for s in sources if os.path.realpath(s.path) not in ids]
    if missing:
        raise ConfigError("--dataset {}: {} of the {} input image(s) are not images of the data "
                          "set (e.g. {}); allowed: its image files (e.g. {}), or no --dataset "
                          "(images numbered 0, 1, ...)".format(
                              dataset, len(missing), len(sources), ", ".join(missing[:3]),
                              next(iter(ids), "none")))
    return {os.path.realpath(s.path): ids[os.path.realpath(s.path)] for s in sources}


def _reason(error) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not an image file that Pillow can read"
    return "{}: {}".format(type(error).__name__, str(error).strip() or "unreadable")


class _Run:
    """The state of one :func:`run_predictions` call."""

    def __init__(self, cfg, model, classes: ClassInfo, score_thresh, jsonl, progress):
        self.format = cfg.INPUT.FORMAT
        self.predictor = BatchPredictor(cfg, model)
        self.classes = classes
        self.metadata = classes.metadata()
        self.score_thresh = score_thresh
        self.jsonl = jsonl
        self.progress = progress
        self.results = []
        self.summary = Summary()

    def warn(self, message):
        tqdm.write("warning: " + message, file=sys.stderr)

    def predict(self, batch):
        """``batch``: (image_id, file, frame, image in INPUT.FORMAT). Returns the drawn RGB
        pictures, after recording the results."""
        instances = self.predictor([image for _, _, _, image in batch])
        pictures = []
        for (image_id, path, frame, image), found in zip(batch, instances):
            found = BatchPredictor.keep(found, self.score_thresh)
            self.record(image_id, path, frame, image.shape, found)
            rgb = convert_image_to_rgb(image, self.format)
            pictures.append(Visualizer(rgb, self.metadata).draw_instance_predictions(
                found).get_image())
        self.progress.update(len(batch))
        return pictures

    def record(self, image_id, path, frame, shape, instances):
        results = instances_to_coco_json(instances, image_id)
        for r in results:
            r["category_id"] = self.classes.category_id(r["category_id"])
        line = {"image_id": image_id, "file": path}
        if frame is not None:
            line["frame"] = frame
        line.update(width=int(shape[1]), height=int(shape[0]), detections=[
            {"class": self.classes.name(c), "category_id": r["category_id"],
             "score": r["score"], "bbox": r["bbox"]}
            for c, r in zip(instances.pred_classes.tolist(), results)])
        self.jsonl.write(json.dumps(line) + "\n")
        self.results.extend(results)
        self.summary.detections += len(results)


def _write_pictures(run, batch, outputs):
    for picture, output in zip(run.predict(batch), outputs):
        save_image(Image.fromarray(picture), output, fsync=False, **(  # never half-written
            {"quality": 95} if output.lower().endswith((".jpg", ".jpeg")) else {}))
    run.summary.images += len(batch)


def _images(run, items, batch_size):
    """Predict images (image_id, source, output) in batches; unreadable ones are skipped."""
    batch, outputs = [], []
    for image_id, source, output in items:
        try:
            image = read_image(source.path, format=run.format)
        except BAD_IMAGE_ERRORS as e:
            run.warn("skipped {}: {}".format(source.path, _reason(e)))
            run.summary.skipped.append((source.path, _reason(e)))
            run.progress.update(1)
            continue
        batch.append((image_id, source.path, None, image))
        outputs.append(output)
        if len(batch) == batch_size:
            _write_pictures(run, batch, outputs)
            batch, outputs = [], []
    if batch:
        _write_pictures(run, batch, outputs)


def _video(run, first_id, source, output, batch_size):
    """Predict a video frame by frame in batches; returns the number of image ids used."""
    try:
        reader = VideoReader(source.path)
    except ValueError as e:
        run.warn("skipped {}: {}".format(source.path, _reason(e)))
        run.summary.skipped.append((source.path, _reason(e)))
        return 0
    frames = 0
    root, ext = os.path.splitext(output)
    partial = "{}.partial-{}{}".format(root, os.getpid(), ext)  # renamed when complete
    try:
        frames = _video_frames(run, first_id, source, reader, partial, batch_size)
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    run.summary.videos += 1
    run.summary.frames += frames
    return frames


def _video_frames(run, first_id, source, reader, output, batch_size):
    frames = 0
    with reader, VideoWriter(output, reader.fps) as writer:
        batch = []
        for rgb in _frames(run, reader):
            image = convert_PIL_to_numpy(Image.fromarray(rgb), run.format)
            batch.append((first_id + frames, source.path, frames, image))
            frames += 1
            if len(batch) == batch_size:
                for picture in run.predict(batch):
                    writer.write(picture)
                batch = []
        for picture in run.predict(batch):
            writer.write(picture)
    return frames


def _frames(run, reader):
    """The reader's frames; fewer than the header announces (a damaged stream) is reported."""
    count = 0
    for rgb in reader:
        count += 1
        yield rgb
    if count < reader.num_frames:
        run.warn("{}: the video ended after {} of the {} frames its header announces".format(
            reader.path, count, reader.num_frames))


def _total(sources):
    """Images plus the frames the videos' headers announce (for the progress bar's ETA)."""
    total = 0
    for source in sources:
        if source.kind == "image":
            total += 1
            continue
        try:
            with VideoReader(source.path) as reader:
                total += reader.num_frames
        except ValueError:  # reported when the video is read
            pass
    return total


def run_predictions(cfg, model, plan: Plan, score_thresh: float = 0.5, batch_size: int = 1,
                    progress: Optional[bool] = None, classes: Optional[ClassInfo] = None,
                    redo: Optional[str] = None) -> Summary:
    """Predict every source of ``plan`` with ``model`` (built from ``cfg``) and write the
    outputs (see the module docstring).

    Args:
        score_thresh (float): only detections with a score >= this are drawn and written.
        batch_size (int): images (or video frames) per forward pass.
        progress (bool or None): show a tqdm progress bar with ETA; None: when stderr is a
            terminal.
        classes (ClassInfo or None): default :func:`~frcnn_plugin.predict.classes.class_info`.
        redo (str or None): the command that redoes the run, for the line an interrupt prints.

    Every file is written atomically: an interrupt (Ctrl-C, SIGTERM) leaves the pictures and
    videos completed so far and no half-written file; predictions.json and .jsonl are written
    at the end only.

    Raises:
        BadImageError: no input could be read at all (the outputs are written nonetheless).
    """
    os.makedirs(os.path.dirname(plan.json_file) or ".", exist_ok=True)
    classes = class_info(cfg) if classes is None else classes
    bar = tqdm(total=_total(plan.sources), unit="img", file=sys.stderr,
               disable=None if progress is None else not progress, dynamic_ncols=True)
    jsonl_partial = "{}.partial-{}".format(plan.jsonl_file, os.getpid())
    run = None

    def note():
        done = (run.summary.images + run.summary.frames) if run else 0
        return ("predicted {} of {} image(s)/frame(s); kept: their pictures in {} (each "
                "complete); not written: {}, {}{}".format(
                    done, bar.total, os.path.dirname(plan.json_file) or ".",
                    PREDICTIONS_JSON, PREDICTIONS_JSONL,
                    "; redo with: " + redo if redo else ""))

    try:
        with interrupt_note(note), bar, open(jsonl_partial, "w") as jsonl:
            run = _Run(cfg, model, classes, score_thresh, jsonl, bar)
            _run_sources(run, plan, batch_size)
        os.replace(jsonl_partial, plan.jsonl_file)
    finally:
        if os.path.exists(jsonl_partial):
            os.remove(jsonl_partial)
    atomic_write(plan.json_file, lambda f: json.dump(run.results, f), mode="w")
    summary = run.summary
    if summary.skipped and not summary.images and not summary.frames:
        raise BadImageError("None of the {} input file(s) could be read: {}".format(
            len(summary.skipped), "; ".join("{} ({})".format(p, r) for p, r in summary.skipped)))
    return summary


def _run_sources(run, plan, batch_size):
    """Consecutive images are batched together; each video is predicted on its own."""
    next_id, images = 0, []
    for source, output in zip(plan.sources, plan.outputs):
        if source.kind == "image":
            images.append((plan.image_ids[os.path.realpath(source.path)]
                           if plan.image_ids else next_id, source, output))
            next_id += 1
            continue
        _images(run, images, batch_size)
        images = []
        next_id += _video(run, next_id, source, output, batch_size)
    _images(run, images, batch_size)
