"""How an image of any size becomes the model's fixed-size input, and how a map goes back.

Vendors resize in one of three ways; the sidecar key ``resize`` (or ``--resize``) says which:

* ``squash``: the whole image resized to the input size, aspect ratio not kept.
* ``crop`` (torchvision's ``Resize(int(size / crop_pct))`` + ``CenterCrop(size)``, timm's
  ``crop_pct``, default 0.875: shorter side to 256 for a 224 input): the image is scaled so it
  covers ``input / crop_pct`` keeping its aspect ratio, then the centre ``input`` pixels are
  kept. The border outside the crop is never seen by the model.
* ``letterbox`` (detection-style "fit"): the whole image scaled to fit inside the input keeping
  its aspect ratio, centred, and the rest padded with the baseline (model-space zero, i.e. the
  dataset mean colour after normalisation, which is also the default ``--baseline``).

A :class:`Placement` records, for one image size, which rectangle of the original image is
resampled (``box``) into which rectangle of the input (``inner``). Maps go back through the same
placement: bilinear resampling of the ``inner`` part onto ``box``, and **zeros where the model
never saw the image** (outside a crop), so no importance is invented for pixels the model did
not see. Resampling uses Pillow's ``resize(box=...)``, which is exactly "resize, then crop".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import BlackboxCamError
from ..io.images import resize, resize_map

RESIZE_MODES = ("squash", "crop", "letterbox")
DEFAULT_CROP_PCT = 0.875  # torchvision's ImageNet recipe (256 -> 224) and timm's default


@dataclass(frozen=True)
class Placement:
    """Where an ``image_hw`` image lands in an ``input_hw`` input.

    ``box = (x0, y0, x1, y1)``: the region of the original image (pixel-edge coordinates, may be
    fractional) that is resampled; ``inner = (top, left, height, width)``: where it goes in the
    input. Input pixels outside ``inner`` are padding.
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    box: tuple[float, float, float, float]
    inner: tuple[int, int, int, int]


@dataclass(frozen=True)
class Geometry:
    """The resize rule: ``mode`` in :data:`RESIZE_MODES` and ``crop_pct`` (``crop`` only)."""

    mode: str = "squash"
    crop_pct: float = DEFAULT_CROP_PCT

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise BlackboxCamError(f"--resize {self.mode!r} is not known; choose one of {', '.join(RESIZE_MODES)}")
        if not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise BlackboxCamError(f"crop_pct must be a number in (0, 1] (0.875 = shorter side to 256 for a "
                                   f"224 input), got {self.crop_pct!r}")

    @classmethod
    def from_options(cls, mode: str | None, crop_pct: float | None) -> Geometry:
        """The rule from what the user or the sidecar gave (``None`` = not given).

        A crop percentage only means something for ``crop``: given alone it implies ``crop``;
        given with another mode it is refused, never silently ignored.
        """
        if crop_pct is not None and mode is None:
            mode = "crop"
        if crop_pct is not None and mode != "crop":
            raise BlackboxCamError(f"crop_pct {crop_pct} applies only to --resize crop, not {mode}; "
                                   "drop --crop-pct (or the sidecar's crop_pct) or use --resize crop")
        return cls(mode or "squash", DEFAULT_CROP_PCT if crop_pct is None else crop_pct)

    def place(self, image_hw: tuple[int, int], input_hw: tuple[int, int]) -> Placement:
        """The :class:`Placement` of an ``image_hw`` image (H, W) in an ``input_hw`` input."""
        h, w = int(image_hw[0]), int(image_hw[1])
        ih, iw = int(input_hw[0]), int(input_hw[1])
        if self.mode == "squash":
            return Placement((h, w), (ih, iw), (0.0, 0.0, float(w), float(h)), (0, 0, ih, iw))
        if self.mode == "letterbox":
            k = min(ih / h, iw / w)
            nh, nw = max(1, min(ih, round(h * k))), max(1, min(iw, round(w * k)))
            return Placement((h, w), (ih, iw), (0.0, 0.0, float(w), float(h)),
                             ((ih - nh) // 2, (iw - nw) // 2, nh, nw))
        # crop, with torchvision's rounding: Resize(S) truncates the longer side, CenterCrop rounds
        th, tw = math.floor(ih / self.crop_pct), math.floor(iw / self.crop_pct)
        if th / h >= tw / w:
            rh, rw = th, max(tw, int(w * th / h))
        else:
            rh, rw = max(th, int(h * tw / w)), tw
        top, left = int(round((rh - ih) / 2.0)), int(round((rw - iw) / 2.0))
        sy, sx = h / rh, w / rw
        box = (left * sx, top * sy, (left + iw) * sx, (top + ih) * sy)
        return Placement((h, w), (ih, iw), box, (0, 0, ih, iw))

    def to_input(self, image: np.ndarray, input_hw: tuple[int, int]) -> tuple[np.ndarray, Placement]:
        """The part of ``image`` (H x W x C) the model sees, resampled to ``inner``'s size."""
        pl = self.place(image.shape[:2], input_hw)
        _, _, nh, nw = pl.inner
        return resize(image, (nh, nw), box=pl.box), pl

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


def prepare(image: np.ndarray, input_hw: tuple[int, int], geometry: Geometry, preprocessing,
            channels: int) -> np.ndarray:
    """``H x W x 3`` RGB [0, 255] -> ``(C, H, W)`` model space: resized by ``geometry``, normalised
    by ``preprocessing`` (:class:`blackbox_cam.model.preprocess.Preprocessing`), padding at zero."""
    content, pl = geometry.to_input(image, input_hw)
    x = preprocessing.apply(content, channels)
    if pl.inner == (0, 0) + tuple(input_hw):
        return x
    top, left, nh, nw = pl.inner
    full = np.zeros((x.shape[0],) + tuple(input_hw), np.float32)
    full[:, top:top + nh, left:left + nw] = x
    return full
