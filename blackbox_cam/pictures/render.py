"""Pictures of saliency maps: a colour map, overlays on the image, panels of several overlays.

The colour map is the classic "jet" (what pytorch-grad-cam's ``show_cam_on_image`` uses),
computed in numpy so no plotting library is needed at run time.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..io.images import to_uint8


def jet(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with the jet colour map (blue = 0, red = 1)."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5,
            confidence: np.ndarray | None = None) -> Image.Image:
    """The map in jet colours blended over the image (same height and width).

    ``confidence`` (same size, 0..1, optional): where it is low the heat colour is desaturated to
    its own grey, so only what the map is sure of shows in colour (``--show-uncertainty``).
    Blended in bands of rows, so a large image costs one uint8 copy, not a dozen float ones.
    """
    if saliency.shape[:2] != image.shape[:2]:
        raise ValueError(f"saliency {saliency.shape} and image {image.shape[:2]} differ in size")
    out = np.empty(image.shape[:2] + (3,), np.uint8)
    band = max(1, (1 << 20) // max(1, image.shape[1]))  # ~1 Mpx per band
    for y in range(0, image.shape[0], band):
        img = to_uint8(image[y:y + band]).astype(np.float32)
        heat = jet(saliency[y:y + band]).astype(np.float32)
        if confidence is not None:
            c = np.clip(np.asarray(confidence[y:y + band], np.float32), 0.0, 1.0)[..., None]
            grey = heat @ np.array([0.299, 0.587, 0.114], np.float32)
            heat = c * heat + (1 - c) * grey[..., None]
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


def outline(picture: Image.Image, region: np.ndarray, color: tuple[int, int, int], width: int = 2) -> Image.Image:
    """``picture`` with the border of a boolean ``region`` drawn ``width`` pixels thick, inside it.

    ``region`` may be at another resolution than the picture (nearest-neighbour resize), so a
    map-sized mask outlines an upscaled overlay exactly.
    """
    from scipy.ndimage import binary_erosion

    m = np.asarray(region, bool)
    if m.shape != (picture.height, picture.width):
        m = np.asarray(Image.fromarray(m).resize(picture.size, Image.NEAREST), bool)
    edge = m & ~binary_erosion(m, iterations=max(1, width), border_value=0)
    out = np.array(picture.convert("RGB"))
    out[edge] = color
    return Image.fromarray(out)


#: Outline colours of the gate's overlays: magenta is absent from the jet colour map.
FORBIDDEN_RGB = (255, 0, 255)
REQUIRED_RGB = (255, 255, 255)


def region_overlay(image: np.ndarray, saliency: np.ndarray, forbidden: np.ndarray | None,
                   required: np.ndarray | None = None, caption: str = "", min_side: int = 256) -> Image.Image:
    """The map over the image, the forbidden region outlined in magenta, the required one in white,
    the map's maximum marked with a cross, and a caption underneath.

    Small images are enlarged (nearest neighbour, by a whole factor) until their shorter side is
    at least ``min_side`` pixels, so a 64 x 64 frame is still readable in a CI artefact.
    """
    import textwrap

    pic = overlay(image, saliency)
    k = max(1, -(-min_side // min(pic.size)))
    if k > 1:
        pic = pic.resize((pic.width * k, pic.height * k), Image.NEAREST)
    width = max(2, min(pic.size) // 128)
    for region, color in ((required, REQUIRED_RGB), (forbidden, FORBIDDEN_RGB)):
        if region is not None:
            pic = outline(pic, region, color, width)
    y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    cx, cy, r = (x + 0.5) * k, (y + 0.5) * k, 3 * width
    draw = ImageDraw.Draw(pic)
    for fill, w in (("black", width + 2), ("white", width)):
        draw.line([(cx - r, cy), (cx + r, cy)], fill=fill, width=w)
        draw.line([(cx, cy - r), (cx, cy + r)], fill=fill, width=w)
    if not caption:
        return pic
    chars = max(20, pic.width // 7)
    text = "\n".join(textwrap.fill(part, chars) for part in caption.split("\n"))
    return panel([pic], [text], tile=pic.height)
