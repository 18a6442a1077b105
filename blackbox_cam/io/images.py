"""Reading images the way users have them, in bounded memory: RGB float32 at a working size.

Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit images all become ``H x W x 3``
float32 RGB in [0, 255], EXIF orientation applied, so every method sees the same pixels the
user sees.

Memory is bounded by design, not by luck:

* an image whose header claims more than :data:`MAX_IMAGE_PIXELS` (268 Mpx, e.g. 16384 x
  16384) is refused from its header, before any pixel is decoded, with a one-line error;
* an image is never kept at more than :data:`MAX_SIDE` (4096) pixels on its longer side: JPEGs
  are decoded directly at 1/2, 1/4 or 1/8 scale (Pillow's ``draft``, the DCT does the work),
  other formats are decoded once as 8-bit and shrunk by an integer factor with Pillow's
  ``reduce`` (box average) before the float copy is made. The model sees at most a few hundred
  pixels a side, so nothing it could see is lost; maps and overlays are written at this working
  size (:func:`read_image` returns it beside the original size, and ``explain.json`` records
  both).

Peak memory is then about 4 bytes per pixel of the original (the 8-bit decode) plus a fixed
~0.5 GB for the working copy, the map and the overlay; ``bench/bench_memory.py`` measures it.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import BlackboxCamError, existing_file

MAX_IMAGE_PIXELS = 2 ** 28   # 268 Mpx (16384 x 16384): larger images are refused from the header
MAX_SIDE = 4096              # the working size: longer side reduced to at most this many pixels
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 20_000 * 20_000)  # our own check comes first


def load_image(path: str | os.PathLike, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """Load ``path`` as float32 RGB ``(H, W, 3)`` with values in [0, 255], at most ``max_side`` a side."""
    return read_image(path, max_side)[0]


def read_image(path: str | os.PathLike, max_side: int | None = MAX_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """``(image, (H, W) of the original)``: the image as :func:`load_image` returns it, and the
    size the file has (after EXIF rotation), so coordinates given on the original can be scaled."""
    p = existing_file(path, "an image file")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise _too_large(p, f"{w}x{h} pixels ({w * h / 1e6:.0f} Mpx)")
            factor = 1 if not max_side else max(1, math.ceil(max(w, h) / max_side))
            if factor > 1 and im.format == "JPEG":
                im.draft("RGB" if im.mode not in ("L", "CMYK") else im.mode, (math.ceil(w / factor), math.ceil(h / factor)))
            im.load()
            orientation = im.getexif().get(0x0112, 1)
            small = _reduce(im, max_side)
            if orientation in _EXIF_TRANSPOSE:
                small = small.transpose(_EXIF_TRANSPOSE[orientation])
                if orientation >= 5:  # the rotations swap width and height
                    w, h = h, w
            return _to_rgb_array(small), (h, w)
    except BlackboxCamError:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard fires in open() beyond 2 x its limit
        raise _too_large(p, "its header size") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BlackboxCamError(f"{p}: not a readable image ({type(e).__name__}: {e}); "
                               "use PNG, JPEG, TIFF, BMP or WebP") from None
    except MemoryError:
        raise BlackboxCamError(f"{p}: not enough memory to decode this image; downscale it first") from None


def _too_large(p, what: str) -> BlackboxCamError:
    side = math.isqrt(MAX_IMAGE_PIXELS)
    return BlackboxCamError(f"{p}: {what} is more than the {MAX_IMAGE_PIXELS / 1e6:.0f} Mpx blackbox-cam decodes "
                            f"(e.g. {side}x{side}); downscale it first (the model sees a few hundred pixels "
                            "a side anyway)")


_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr"}


def _reduce(im: Image.Image, max_side: int | None) -> Image.Image:
    """``im`` shrunk by the smallest integer factor that brings its longer side to ``max_side``
    (box average, Pillow's ``reduce``); modes ``reduce`` cannot handle are converted first."""
    if not max_side or max(im.size) <= max_side:
        return im
    factor = math.ceil(max(im.size) / max_side)
    if im.mode not in _REDUCIBLE:
        if im.mode.startswith("I;16"):
            im = im.convert("I")
        elif im.mode == "P" or im.mode == "PA":
            im = im.convert("RGBA" if (im.mode == "PA" or "transparency" in im.info) else "RGB")
        else:
            im = im.convert("L" if im.mode == "1" else "RGB")
    return im.reduce(factor)


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
    return np.array(im, dtype=np.float32)  # one float copy (writable), no second


def as_rgb(image: Any, what: str = "image") -> np.ndarray:
    """A PIL image or an array -> ``H x W x 3`` float32 RGB in [0, 255], as files are read.

    Arrays: ``uint8`` (0..255), other integers (0..255, or 0..65535 for ``uint16``), or float:
    0..255, or 0..1 when no value exceeds 1 (what matplotlib and scikit-image give). ``H x W``
    and ``H x W x 1`` are grey; an alpha channel (``H x W x 4``) is dropped. PIL images are
    converted as files are (:func:`read_image`: EXIF rotation applied, 16-bit scaled, alpha dropped).
    """
    if isinstance(image, Image.Image):
        from PIL import ImageOps

        return _to_rgb_array(ImageOps.exif_transpose(image))
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        a = a[:, :, :3] if a.shape[2] != 1 else a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or min(a.shape[:2]) < 1:
        raise BlackboxCamError(f"{what}: an image array must be H x W x 3 RGB (or H x W grey, H x W x 4 RGBA), "
                               f"got shape {a.shape}")
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise BlackboxCamError(f"{what}: image arrays hold numbers (uint8 or float), not {a.dtype}")
    if np.issubdtype(a.dtype, np.integer):
        top = 65535.0 if a.dtype == np.uint16 else 255.0
        if a.min() < 0 or a.max() > top:
            raise BlackboxCamError(f"{what}: integer pixel values must lie in 0..{top:.0f}, got "
                                   f"{a.min()}..{a.max()}")
        return (a.astype(np.float32) * np.float32(255.0 / top)).astype(np.float32)
    f = a.astype(np.float32)
    if not np.isfinite(f).all():
        raise BlackboxCamError(f"{what}: the image array holds NaN or inf values")
    lo, hi = float(f.min()), float(f.max())
    if lo < 0 or hi > 255:
        raise BlackboxCamError(f"{what}: float pixel values must lie in 0..1 or 0..255, got {lo:g}..{hi:g}")
    return f * np.float32(255.0) if hi <= 1.0 else f


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
