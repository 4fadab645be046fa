"""Crash-safe checkpoints: :class:`AtomicCheckpointer`, a ``DetectionCheckpointer`` that

* writes each checkpoint to a temporary file in the same folder, fsyncs it, then renames it
  (``os.replace``) to ``model_XXXXXXX.pth``, and fsyncs the folder; then updates the
  ``last_checkpoint`` tag the same way. A process killed at any moment (SIGKILL, power loss
  after the fsync) leaves ``last_checkpoint`` naming the previous complete checkpoint, and at
  worst a stray ``*.tmp-<pid>`` file, which the next ``--resume`` deletes;
* fails with clear errors when loading: a missing file, a corrupt or truncated file, a file
  that is not a checkpoint, a checkpoint none of whose tensors fits the model (another
  architecture), and, when resuming, any difference between the model and the checkpoint.

Remote save folders (a ``scheme://`` path handled by detectron2's PathManager) fall back to
detectron2's plain writes.
"""
import logging
import os
import re
from collections.abc import Mapping

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..errors import CheckpointError, MissingFileError
from ..files import atomic_write, is_local, load_error_cause
from ..modeling.fc_svd import adapt_fc_state_dict

__all__ = ["AtomicCheckpointer", "TAG_FILE"]

logger = logging.getLogger(__name__)

TAG_FILE = "last_checkpoint"
_TEMP_SUFFIX = re.compile(r"\.tmp-\d+$")


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves and clear load errors (see the module doc).

    Same constructor and interface as ``DetectionCheckpointer``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._resuming = False
        self._loading = None
        # names of the model's parameters that the last load left as they were (absent from
        # the checkpoint, or of another shape); None before any load
        self.unloaded_parameters = None

    # ------------------------------------------------------------------------------- saving
    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk or not is_local(self.save_dir):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = "{}.pth".format(name)
        save_file = os.path.join(self.save_dir, basename)
        if os.path.basename(save_file) != basename:
            raise ValueError("Checkpoint name {!r} must be a plain file name".format(name))
        self.logger.info("Saving checkpoint to {}".format(save_file))
        os.makedirs(self.save_dir, exist_ok=True)
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        if not is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        path = os.path.join(self.save_dir, TAG_FILE)
        atomic_write(path, lambda f: f.write(last_filename_basename), mode="w")

    def remove_stale_temp_files(self):
        """Delete ``*.tmp-<pid>`` files left in the save folder by a killed writer."""
        if not (self.save_dir and self.save_to_disk and is_local(self.save_dir)):
            return []
        if not os.path.isdir(self.save_dir):
            return []
        removed = []
        for name in sorted(os.listdir(self.save_dir)):
            base = _TEMP_SUFFIX.sub("", name)
            if base != name and (base.endswith(".pth") or base == TAG_FILE):
                os.remove(os.path.join(self.save_dir, name))
                removed.append(name)
        if removed:
            self.logger.warning(
                "Removed incomplete file(s) left by an interrupted checkpoint write: %s",
                ", ".join(removed),
            )
        return removed

    # ------------------------------------------------------------------------------ loading
    def resume_or_load(self, path, *, resume=True):
        self._resuming = bool(resume and self.has_checkpoint())
        try:
            if self._resuming:
                self.remove_stale_temp_files()
            return super().resume_or_load(path, resume=resume)
        finally:
            self._resuming = False

    def load(self, path, *args, **kwargs):
        # detectron2 after v0.6 accepts "file.pth?matching_heuristics=True"
        if path and is_local(path) and os.path.isdir(path.split("?", 1)[0]):
            raise MissingFileError(
                "Checkpoint {} is a folder, not a file (MODEL.WEIGHTS or the path given to "
                "load); allowed: a checkpoint file, e.g. {}".format(
                    path, os.path.join(path, "model_final.pth")))
        if path and is_local(path) and not os.path.isfile(path.split("?", 1)[0]):
            if self._resuming:
                raise MissingFileError(
                    "Cannot resume: {} names {}, which does not exist. Restore it, or edit or "
                    "delete that file to resume from another checkpoint or start over.".format(
                        os.path.join(self.save_dir, TAG_FILE), path
                    )
                )
            raise MissingFileError(
                "Checkpoint not found: {} (MODEL.WEIGHTS or the path given to load); allowed: an "
                "existing checkpoint file, or '' for no weights".format(path)
            )
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename):
        try:
            loaded = super()._load_file(filename)
        except Exception as e:
            raise CheckpointError(
                "Cannot read checkpoint {}: it is corrupt, truncated or not a PyTorch/detectron2 "
                "checkpoint ({})".format(filename, load_error_cause(e))
            ) from e
        if not isinstance(loaded, Mapping) or not isinstance(loaded.get("model"), Mapping):
            raise CheckpointError(
                "Checkpoint {} holds no state dict (found {}); expected a dict of tensors or "
                "{{'model': state_dict, ...}}".format(filename, type(loaded.get("model", loaded))
                                                      .__name__)
            )
        self._loading = filename
        return loaded

    def _load_model(self, checkpoint):
        keys_in_checkpoint = list(checkpoint.get("model", {}).keys())
        if isinstance(checkpoint.get("model"), dict):
            # truncated-SVD fc layers (MODEL.ROI_BOX_HEAD.FC_SVD_RANKS): factorize full weights,
            # or factors of another rank, before detectron2 compares shapes
            adapt_fc_state_dict(self.model, checkpoint["model"])
        incompatible = super()._load_model(checkpoint)
        if incompatible is None:
            return incompatible
        filename = self._loading or "the checkpoint"
        params = [n for n, _ in self.model.named_parameters()]
        missing = set(incompatible.missing_keys)
        loaded = [n for n in params if n not in missing]
        self.unloaded_parameters = [n for n in params if n in missing]
        if params and not loaded:
            raise CheckpointError(
                "Checkpoint {} does not fit the model: none of its {} tensors matches a model "
                "parameter by name and shape (checkpoint keys e.g. {}; model parameters e.g. {}). "
                "It was trained for another architecture or other MODEL.* settings (e.g. "
                "MODEL.VGG.DEPTH, MODEL.BACKBONE.NAME).".format(
                    filename, len(keys_in_checkpoint), keys_in_checkpoint[:3], params[:3]
                )
            )
        if self._resuming and (missing & set(params) or incompatible.incorrect_shapes):
            shapes = ["{} {} (model: {})".format(k, tuple(a), tuple(b))
                      for k, a, b in incompatible.incorrect_shapes[:3]]
            raise CheckpointError(
                "Cannot resume from {}: the model differs from the one that wrote it "
                "({} parameters missing from the checkpoint, e.g. {}; {} with another shape{}). "
                "Resume with the config of that run, or use another OUTPUT_DIR.".format(
                    filename, len(missing & set(params)), sorted(missing & set(params))[:3],
                    len(incompatible.incorrect_shapes), ": " + "; ".join(shapes) if shapes else "",
                )
            )
        return incompatible
