"""Small PIL drawing helpers with fixed, documented colours.

Boxes are drawn without anti-aliasing, so a box's outline has exactly its colour (tests and
users can look for it). Colours (RGB):

================  ===============  =============================================================
name              colour           what
================  ===============  =============================================================
``GT``            (0, 255, 0)      ground-truth boxes (green), always drawn last (on top)
``POSITIVE``      (255, 0, 0)      positive anchors, foreground RoIs (red)
``NEGATIVE``      (0, 0, 255)      negative anchors, background RoIs (blue)
``PREDICTION``    (255, 0, 255)    predicted boxes: decoded anchor deltas, detections (magenta)
``GRID``          (128, 128, 128)  the feature grid (grey)
``CENTRE``        (255, 255, 255)  anchor centres (white)
``ANCHOR_COLORS`` see below        anchors of the 1st, 2nd, ... size (orange, cyan, yellow, ...)
================  ===============  =============================================================
"""
import math
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..outputs import save_image

__all__ = [
    "GT",
    "POSITIVE",
    "NEGATIVE",
    "PREDICTION",
    "GRID",
    "CENTRE",
    "ANCHOR_COLORS",
    "Canvas",
    "display_scale",
]

GT = (0, 255, 0)
POSITIVE = (255, 0, 0)
NEGATIVE = (0, 0, 255)
PREDICTION = (255, 0, 255)
GRID = (128, 128, 128)
CENTRE = (255, 255, 255)
# one colour per anchor size (smallest first), repeated when there are more sizes
ANCHOR_COLORS = (
    (255, 128, 0),
    (0, 255, 255),
    (255, 255, 0),
    (255, 0, 255),
    (255, 255, 255),
    (255, 128, 128),
)


def display_scale(image_size: Tuple[int, int], min_side: int = 384) -> int:
    """The smallest integer zoom that makes the longer side of ``image_size`` (h, w) at least
    ``min_side`` pixels (1 for images that are large already)."""
    return max(1, int(np.ceil(min_side / max(1, max(image_size)))))


class Canvas:
    """An RGB picture of an image, zoomed by an integer ``scale`` and padded by ``margin``
    pixels on every side; drawing methods take coordinates in image pixels.

    A point (x, y) of the image lands on canvas pixel (x * scale + margin, y * scale + margin).
    """

    def __init__(self, image_rgb: np.ndarray, scale: int = 1, margin: int = 0, dim: float = 1.0):
        """
        Args:
            image_rgb (ndarray): (H, W, 3) uint8 RGB image.
            scale (int): integer zoom (nearest neighbour), >= 1.
            margin (int): black border around the image, in canvas pixels.
            dim (float): brightness factor of the image in (0, 1] (< 1 makes boxes stand out).
        """
        image = np.asarray(image_rgb, dtype=np.float32) * float(dim)
        h, w = image.shape[:2]
        self.scale, self.margin = int(scale), int(margin)
        picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).resize(
            (w * self.scale, h * self.scale), Image.NEAREST
        )
        self.image = Image.new("RGB", (w * self.scale + 2 * margin, h * self.scale + 2 * margin))
        self.image.paste(picture, (margin, margin))
        self.draw = ImageDraw.Draw(self.image)

    def to_canvas(self, x: float, y: float) -> Tuple[int, int]:
        """Canvas pixel of image point (x, y)."""
        return int(round(x * self.scale)) + self.margin, int(round(y * self.scale)) + self.margin

    def box(self, box: Sequence[float], color, width: Optional[int] = None):
        """Outline of an XYXY box (image pixels). What lies outside the canvas is cut off (e.g.
        a far-off box decoded by an untrained head); a box with a NaN or infinite coordinate is
        not drawn."""
        if not all(math.isfinite(v) for v in box):
            return
        width = width or max(1, self.scale // 2)
        (x0, y0), (x1, y1) = self.to_canvas(box[0], box[1]), self.to_canvas(box[2], box[3])
        # sides beyond the canvas stay beyond it, with coordinates small enough for PIL
        w, h = self.image.size
        x0, x1 = (min(max(v, -width - 1), w + width) for v in (x0, x1))
        y0, y1 = (min(max(v, -width - 1), h + width) for v in (y0, y1))
        self.draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color,
                            width=width)

    def boxes(self, boxes: Iterable[Sequence[float]], color, width: Optional[int] = None):
        for b in boxes:
            self.box(b, color, width)

    def point(self, x: float, y: float, color, radius: int = 2):
        cx, cy = self.to_canvas(x, y)
        self.draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)

    def grid(self, stride: float, size: Tuple[int, int], color=GRID):
        """Lines every ``stride`` image pixels over an image of ``size`` (h, w)."""
        h, w = size
        for x in np.arange(0, w + 1e-6, stride):
            self.draw.line([self.to_canvas(x, 0), self.to_canvas(x, h)], fill=color, width=1)
        for y in np.arange(0, h + 1e-6, stride):
            self.draw.line([self.to_canvas(0, y), self.to_canvas(w, y)], fill=color, width=1)

    def text(self, x: float, y: float, text: str, color=CENTRE):
        """Text at image point (x, y) (PIL's default font)."""
        self.draw.text(self.to_canvas(x, y), text, fill=color)

    def save(self, path: str) -> str:
        return save_image(self.image, path, optimize=True)  # atomically

    def to_chw(self) -> np.ndarray:
        """(3, H, W) uint8, for ``EventStorage.put_image``."""
        return np.ascontiguousarray(np.asarray(self.image).transpose(2, 0, 1))
