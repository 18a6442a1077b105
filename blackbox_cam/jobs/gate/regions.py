"""Image regions for the evidence gate: a pixel box or a mask image, rasterised per image.

A region says where evidence may not (``--forbid``) or must (``--require``) lie. It is given
either as

* a **box** ``x0,y0,x1,y1`` in the original image's pixels, inclusive-exclusive (pixels
  ``x0 <= x < x1``, ``y0 <= y < y1``, the convention of ``compare --boxes``); it must lie
  inside every image it is applied to; or
* a **mask image** (any file Pillow reads): white (grey value > 127 after conversion to
  8-bit grey) is the region. It is resized with nearest-neighbour interpolation to each image,
  so one mask drawn at any resolution serves a fixed camera's frames at any resolution.

Problems are found up front, before any model query: :func:`parse_region` rejects a missing or
unreadable mask file, a mask with no white pixel and a malformed box; :func:`check_regions`
rejects a box that leaves an image and a mask that covers no pixel once resized to it.
Several regions of one kind are united (:func:`union`).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import BlackboxCamError
from ...metrics.localisation import box_mask

#: Grey values above this are "white" (inside the region) in a mask image.
MASK_THRESHOLD = 127

_BOX = re.compile(r"^\s*[-+]?\d+(\.\d*)?(\s*,\s*[-+]?\d+(\.\d*)?)*\s*$")


@dataclass(frozen=True, eq=False)
class Region:
    """One region: a box or a boolean mask at the mask file's own resolution.

    Attributes
    ----------
    spec : what the user wrote (a box ``"x0,y0,x1,y1"`` or a mask file path), used in messages.
    box : ``(x0, y0, x1, y1)`` for a box region, else ``None``.
    mask : ``bool (h, w)`` for a mask region (``True`` = inside), else ``None``.
    """

    spec: str
    box: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "box" if self.box is not None else "mask"

    def raster(self, shape: tuple[int, int], original: tuple[int, int] | None = None) -> np.ndarray:
        """``bool (H, W)``: the region on an image of ``shape = (H, W)``; raises if it does not fit.

        ``original`` is the image file's own size when the image is worked on reduced
        (:data:`blackbox_cam.io.images.MAX_SIDE`): a box is checked against it and scaled to ``shape``.
        """
        h, w = int(shape[0]), int(shape[1])
        if self.box is not None:
            oh, ow = (int(original[0]), int(original[1])) if original is not None else (h, w)
            x0, y0, x1, y1 = self.box
            if x1 > ow or y1 > oh:
                raise BlackboxCamError(f"box {self.spec} lies outside the {ow}x{oh} image (x1 <= {ow} and "
                                       f"y1 <= {oh} are needed); give the box in this image's pixels")
            sx, sy = w / ow, h / oh
            out = box_mask((x0 * sx, y0 * sy, x1 * sx, y1 * sy), (h, w))
        else:
            assert self.mask is not None
            out = self.mask if self.mask.shape == (h, w) else np.asarray(
                Image.fromarray(self.mask).resize((w, h), Image.NEAREST), dtype=bool)
        if not out.any():
            raise BlackboxCamError(f"{self.kind} {self.spec} covers no pixel of a {w}x{h} image once resized to it "
                                   "(it is thinner than one pixel there); draw a larger region")
        return out


def parse_region(spec: str | os.PathLike) -> Region:
    """A box ``x0,y0,x1,y1`` or a mask image path -> :class:`Region` (validated, mask loaded once)."""
    text = str(spec)
    if isinstance(spec, str) and "," in text and _BOX.match(text) and not Path(text).exists():
        return _parse_box(text)
    return _load_mask(Path(text))


def _parse_box(text: str) -> Region:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.lstrip("+-").isdigit() for p in parts):
        raise BlackboxCamError(f"box {text!r} is not x0,y0,x1,y1: four whole numbers of pixels are needed "
                               "(e.g. 40,54,64,64), or pass a mask image")
    x0, y0, x1, y1 = (int(p) for p in parts)
    if x0 < 0 or y0 < 0:
        raise BlackboxCamError(f"box {text} lies outside the image: x0 and y0 must be >= 0")
    if x1 <= x0 or y1 <= y0:
        raise BlackboxCamError(f"box {text} is empty: x1 must exceed x0 and y1 must exceed y0 "
                               "(x1, y1 are exclusive)")
    return Region(text, box=(x0, y0, x1, y1))


def _load_mask(p: Path) -> Region:
    if not p.exists():
        raise BlackboxCamError(f"{p}: no such region file; pass a mask image (white = region) or a box x0,y0,x1,y1")
    if not p.is_file():
        raise BlackboxCamError(f"{p}: is not a file; pass a mask image (white = region) or a box x0,y0,x1,y1")
    try:
        with Image.open(p) as im:
            im.load()
            grey = np.asarray(im.convert("L"))  # colour values only: alpha is ignored, as for images
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BlackboxCamError(f"{p}: not a readable mask image ({type(e).__name__}: {e}); "
                               "use a PNG where white marks the region") from None
    mask = grey > MASK_THRESHOLD
    if not mask.any():
        raise BlackboxCamError(f"{p}: the mask is all black (no pixel above grey {MASK_THRESHOLD}), so it marks "
                               "no region; paint the region white")
    return Region(str(p), mask=mask)


def union(regions: Sequence[Region], shape: tuple[int, int],
          original: tuple[int, int] | None = None) -> np.ndarray | None:
    """The union of ``regions`` on an image of ``shape`` (file size ``original``), or ``None`` if none."""
    if not regions:
        return None
    out = np.zeros(tuple(int(s) for s in shape[:2]), bool)
    for r in regions:
        out |= r.raster(shape, original)
    return out


def check_regions(regions: Iterable[Region], shape: tuple[int, int], image: str) -> None:
    """Raise a one-line error naming ``image`` if any region does not fit an image of ``shape``
    (the file's size; checked at the size the image is worked on, see :func:`working_shape`)."""
    work = working_shape(shape)
    for r in regions:
        try:
            r.raster(work, shape)
        except BlackboxCamError as e:
            raise BlackboxCamError(f"{image}: {e}") from None


def working_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The ``(H, W)`` :func:`blackbox_cam.io.images.read_image` works on for a file of ``shape``."""
    from ...io.images import MAX_SIDE
    h, w = int(shape[0]), int(shape[1])
    f = max(1, math.ceil(max(h, w) / MAX_SIDE))
    return (h, w) if f == 1 else (math.ceil(h / f), math.ceil(w / f))


def image_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(H, W)`` of an image file as :func:`blackbox_cam.io.images.load_image` returns it (EXIF
    orientation applied), read from the header only; ``None`` if Pillow cannot open it (the
    image then fails later, when it is loaded, with its own message)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
