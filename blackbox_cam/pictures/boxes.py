"""Boxes drawn on an image: the overlay ``detect`` writes and a detection result shows.

Pure drawing (Pillow's ``ImageDraw``): boxes in the image's pixels, one colour per class
(a fixed 20-colour cycle, Ultralytics' palette order), a caption ``label score`` on a filled
tab above each box (inside it when the box touches the top edge). Line width and font size
follow the image size so a 4000-pixel photo and a 320-pixel thumbnail both read.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Ultralytics' ``Colors`` palette (hex), so a class has the colour its vendor's plots give it.
PALETTE = ("FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
           "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7")


def class_colour(index: int) -> tuple[int, int, int]:
    h = PALETTE[int(index) % len(PALETTE)]
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def draw_boxes(image: np.ndarray | Image.Image, boxes: np.ndarray, classes: Sequence[int],
               captions: Sequence[str]) -> Image.Image:
    """``image`` (H x W x 3, 0..255, or a PIL image) with ``boxes`` ``[K, 4]`` (x0, y0, x1, y1,
    image pixels) drawn in their class colours, each captioned. Highest-scoring boxes are
    expected first; they are drawn last so they stay on top."""
    if isinstance(image, Image.Image):
        canvas = image.convert("RGB")
    else:
        canvas = Image.fromarray(np.clip(np.rint(np.asarray(image, np.float32)), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    line = max(1, round(min(w, h) / 250))
    font = ImageFont.load_default(size=max(10, round(min(w, h) / 40)))
    for k in reversed(range(len(boxes))):
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        col = class_colour(classes[k])
        draw.rectangle((x0, y0, x1, y1), outline=col, width=line)
        text = captions[k]
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        tw, th = r - l + 2 * line, b - t + 2 * line
        ty = y0 - th if y0 - th >= 0 else y0
        tx = min(max(0.0, x0), max(0.0, w - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=col)
        ink = (0, 0, 0) if sum(col) > 382 else (255, 255, 255)
        draw.text((tx + line - l, ty + line - t), text, fill=ink, font=font)
    return canvas
