"""Video reading and writing with OpenCV (``opencv-python-headless``, the library detectron2's
``Visualizer`` and its own demo use), frame by frame: a video is never held in memory whole."""
from typing import Iterator

import numpy as np

from ..errors import OutputError

__all__ = ["VideoReader", "VideoWriter", "count_frames", "FOURCC"]

DEFAULT_FPS = 25.0
# MPEG-4 part 2 in an .mp4 file: the encoder OpenCV's wheels always have (they have no H.264
# encoder). It plays in VLC, mpv and FFmpeg-based players; for a browser, re-encode it with
# ffmpeg -i in.mp4 -c:v libx264 out.mp4.
FOURCC = "mp4v"


def _cv2():
    import cv2  # imported here: only videos need it at this point

    return cv2


class VideoReader:
    """The frames of a video file as RGB ``uint8`` arrays (H, W, 3), in order.

    Args:
        path (str): the video file.

    Raises:
        ValueError: the file cannot be opened as a video.
    """

    def __init__(self, path: str):
        cv2 = _cv2()
        self.path = path
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            raise ValueError("OpenCV cannot open it as a video")
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        # the container's count; 0 when the file does not say (some formats)
        self.num_frames = max(int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, bgr = self.capture.read()
            if not ok:
                return
            yield np.ascontiguousarray(bgr[:, :, ::-1])

    def close(self):
        self.capture.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoWriter:
    """Write RGB ``uint8`` frames (H, W, 3) to an ``.mp4`` file (:data:`FOURCC`); the first
    frame sets the size, odd sides are padded by one pixel (the codec needs even sides).

    Args:
        path (str): the output file.
        fps (float): frames per second.

    Raises:
        OutputError: (an ``OSError``) the file cannot be written (from :meth:`write`).
    """

    def __init__(self, path: str, fps: float):
        self.path = path
        self.fps = float(fps)
        self.writer = None
        self.size = None
        self.frames = 0

    def _open(self, height, width):
        cv2 = _cv2()
        self.size = (width + width % 2, height + height % 2)
        self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*FOURCC), self.fps,
                                      self.size)
        if not self.writer.isOpened():
            raise OutputError("OpenCV cannot write the video {} ({} {}x{})".format(
                self.path, FOURCC, *self.size))

    def write(self, rgb: np.ndarray):
        """Add one frame."""
        if self.writer is None:
            self._open(*rgb.shape[:2])
        pad_h, pad_w = self.size[1] - rgb.shape[0], self.size[0] - rgb.shape[1]
        if pad_h or pad_w:
            rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        self.frames += 1

    def close(self):
        if self.writer is not None:
            self.writer.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def count_frames(path: str) -> int:
    """The number of frames a video file holds, by decoding it (exact, unlike its header)."""
    with VideoReader(path) as reader:
        return sum(1 for _ in reader)
