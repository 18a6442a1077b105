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


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``H x W x C`` float image to ``size = (H, W)`` (Pillow, per channel)."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image.astype(np.float32, copy=False)
    chans = [np.asarray(Image.fromarray(image[:, :, c].astype(np.float32), mode="F")
                        .resize((w, h), Image.BILINEAR)) for c in range(image.shape[2])]
    return np.stack(chans, axis=2).astype(np.float32)


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size = (H, W)``, values clipped to the input range."""
    h, w = size
    if saliency.shape == (h, w):
        return saliency.astype(np.float32, copy=False)
    out = np.asarray(Image.fromarray(saliency.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    return np.clip(out, float(saliency.min()), float(saliency.max())).astype(np.float32)
