"""Reading images the way users have them: any mode Pillow opens, returned as RGB float32.

Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images all become ``H x W x 3``
float32 RGB in [0, 255], EXIF orientation applied, so every method sees the same pixels the
user sees.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BlackboxCamError, existing_file

Image.MAX_IMAGE_PIXELS = 20_000 * 20_000  # decompression-bomb guard, generous for real photos


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load ``path`` as float32 RGB ``(H, W, 3)`` with values in [0, 255]."""
    p = existing_file(path, "an image file")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            return _to_rgb_array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BlackboxCamError(f"{p}: not a readable image ({type(e).__name__}: {e}); "
                               "use PNG, JPEG, TIFF, BMP or WebP") from None


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if (mode.startswith("I;16") or a.max() > 255) else 255.0
        if mode == "F" and a.max() <= 1.0:
            hi = 1.0
        a = np.clip(a / hi * 255.0, 0, 255)
        return np.repeat(a[:, :, None], 3, axis=2).astype(np.float32)
    if mode in ("LA", "PA", "RGBA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA").convert("RGB")  # alpha dropped: the colour values are kept
    elif mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.float32).copy()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 255] to uint8 for drawing."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int],
           box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Bilinear (antialiased) resize of an ``H x W x C`` image to ``size = (H, W)``, per channel.

    ``box = (x0, y0, x1, y1)`` resamples only that region of the image (Pillow's ``resize(box=)``:
    the same pixels as resizing the whole image and cropping, without the full-size copy).
    """
    h, w = size
    full = (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
    if image.shape[:2] == (h, w) and (box is None or tuple(box) == full):
        return image.astype(np.float32, copy=False)
    out = np.empty((h, w, image.shape[2]), np.float32)
    for c in range(image.shape[2]):
        out[:, :, c] = Image.fromarray(image[:, :, c].astype(np.float32), mode="F").resize(
            (w, h), Image.BILINEAR, box=box)
    return out


def resize_map(saliency: np.ndarray, size: tuple[int, int],
               box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Bilinear resize of a 2-D map (or its ``box`` region) to ``size = (H, W)``, clipped to its range."""
    h, w = size
    if saliency.shape == (h, w) and box is None:
        return saliency.astype(np.float32, copy=False)
    out = np.asarray(Image.fromarray(saliency.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR, box=box))
    return np.clip(out, float(saliency.min()), float(saliency.max())).astype(np.float32)
