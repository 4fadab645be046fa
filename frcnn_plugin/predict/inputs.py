"""What ``tools/predict.py`` reads: ``--input`` arguments expanded to image and video files, and
the output file each one gets."""
import glob
import os
from typing import List, NamedTuple, Sequence

from ..errors import MissingFileError, OutputError, OutputExistsError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Source",
    "expand_inputs",
    "output_names",
    "check_outputs",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm",
                    ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
# Pictures are written in the input's format where Pillow writes it, else as PNG.
_WRITABLE = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Source(NamedTuple):
    """One input file: ``kind`` is ``"image"`` or ``"video"``."""

    path: str
    kind: str


def _kind(path):
    return "video" if os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS else "image"


def _is_media(path):
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS


def expand_inputs(inputs: Sequence[str], flag: str = "--input") -> List[Source]:
    """Each input is a file (an image, or a video by its extension), a folder (its image and
    video files, sorted; not its sub-folders) or a glob pattern (``*``, ``?``, ``[``; ``**``
    recursive). A file is listed once even if several inputs name it. ``flag``: the option
    named in the errors.

    Raises:
        MissingFileError: an input that does not exist, or a folder or pattern with no image or
            video file.
    """
    sources, seen = [], set()
    for item in inputs:
        if os.path.isdir(item):
            paths = sorted(p for p in (os.path.join(item, n) for n in os.listdir(item))
                           if os.path.isfile(p) and _is_media(p))
            if not paths:
                raise MissingFileError(
                    "{} {}: no image or video file in this folder; allowed: files ending in "
                    "{}".format(flag, item, ", ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)))
        elif os.path.isfile(item):
            paths = [item]
        elif glob.has_magic(item):
            paths = sorted(p for p in glob.glob(item, recursive=True)
                           if os.path.isfile(p) and _is_media(p))
            if not paths:
                raise MissingFileError(
                    "{} {}: the pattern matches no image or video file".format(flag, item))
        else:
            raise MissingFileError(
                "{} {}: not found; allowed: an image, a video, a folder or a glob "
                "pattern".format(flag, item))
        for path in paths:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                sources.append(Source(path, _kind(path)))
    return sources


def output_names(sources: Sequence[Source]) -> List[str]:
    """The output file name of each source: its own name (a video as ``.mp4``, a picture in
    a format Pillow does not write as ``.png``), with ``_2``, ``_3`` ... when two sources would
    get the same name (in input order)."""
    names, taken = [], set()
    for source in sources:
        stem, ext = os.path.splitext(os.path.basename(source.path))
        if source.kind == "video":
            ext = ".mp4"
        elif ext.lower() not in _WRITABLE:
            ext = ".png"
        name, n = stem + ext, 1
        while name.lower() in taken:
            n += 1
            name = "{}_{}{}".format(stem, n, ext)
        taken.add(name.lower())
        names.append(name)
    return names


def check_outputs(paths: Sequence[str], sources: Sequence[Source], overwrite: bool):
    """Refuse to replace an input, or (without ``overwrite``) any existing file.

    Raises:
        OutputError: an output path is one of the inputs.
        OutputExistsError: files exist already and ``overwrite`` is False; names them.
    """
    inputs = {os.path.realpath(s.path) for s in sources}
    clash = [p for p in paths if os.path.realpath(p) in inputs]
    if clash:
        raise OutputError("--output would replace the input {}; allowed: an --output folder "
                          "other than the inputs' folder".format(", ".join(clash[:3])))
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise OutputExistsError(
            "{} output file(s) exist already: {}{}; allowed: --overwrite to replace them, or "
            "another --output folder".format(
                len(existing), ", ".join(existing[:5]),
                " ..." if len(existing) > 5 else ""))
