"""Pictures of saliency maps: a colour map, overlays on the image, panels of several overlays.

The colour map is the classic "jet" (what pytorch-grad-cam's ``show_cam_on_image`` uses),
computed in numpy so no plotting library is needed at run time.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import to_uint8


def jet(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with the jet colour map (blue = 0, red = 1)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The map in jet colours blended over the image (same height and width).

    Blended in bands of rows, so a large image costs one uint8 copy, not a dozen float ones.
    """
    if saliency.shape[:2] != image.shape[:2]:
        raise ValueError(f"saliency {saliency.shape} and image {image.shape[:2]} differ in size")
    out = np.empty(image.shape[:2] + (3,), np.uint8)
    band = max(1, (1 << 20) // max(1, image.shape[1]))  # ~1 Mpx per band
    for y in range(0, image.shape[0], band):
        img = to_uint8(image[y:y + band]).astype(np.float32)
        heat = jet(saliency[y:y + band]).astype(np.float32)
        out[y:y + band] = np.clip((1 - alpha) * img + alpha * heat + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def panel(tiles: list[Image.Image], captions: list[str], tile: int = 256, title: str | None = None) -> Image.Image:
    """Tiles side by side (each scaled to ``tile`` pixels high) with a caption under each."""
    font = _font(max(12, tile // 18))
    scaled = [t.resize((max(1, round(t.width * tile / t.height)), tile), Image.BILINEAR) for t in tiles]
    line_h = font.size + 4 if hasattr(font, "size") else 14
    n_lines = max((c.count("\n") + 1 for c in captions), default=1)
    top = line_h + 6 if title else 0
    width = sum(s.width for s in scaled) + 8 * (len(scaled) + 1)
    height = top + tile + 12 + n_lines * line_h
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((8, 4), title, fill="black", font=font)
    x = 8
    for s, cap in zip(scaled, captions):
        canvas.paste(s, (x, top + 4))
        draw.multiline_text((x, top + tile + 8), cap, fill="black", font=font, spacing=2)
        x += s.width + 8
    return canvas
