"""A vendor's own Python function as part of the pipeline: loaded, fingerprinted, checked, probed.

Many vendors' preprocessing is a function no declarative sidecar says (fit the height and pad on
the right in model space, as PaddleOCR's ``resize_norm_img``; pad to a square top-left; scale by
the image's own maximum). ``preprocess_fn`` takes that function as it is; ``postprocess_fn`` takes
the function that turns a batch's raw outputs into class scores (several outputs combined, a
vendor's calibration). OpenVINO XAI's black-box mode takes the same pair (``preprocess_fn`` /
``postprocess_fn``); here the rest of the tool stays as it is: masks and maps in the image's own
pixels, ``verify``, records.

* :func:`load_function`: ``"FILE.py:NAME"`` (relative to ``base``, e.g. the sidecar's folder) or
  a Python callable -> :class:`VendorFunction` with the file's SHA-256 (a changed function is a
  changed pipeline for the map cache). Importing the file **runs its code**, like a
  ``conftest.py``; callers print the file they import.
* :meth:`VendorFunction.preprocess`: one ``H x W x 3`` uint8 RGB image -> the model's input for
  it, checked (an exception, a non-array, the wrong shape or dtype, NaN/inf: one line naming the
  function and what it returned).
* :func:`probe_baseline`: the colour the function maps to model-space zero (constant probes),
  the ``zeros`` baseline of the black-box methods once they mask the image before the function.
* :func:`probe_geometry`: where each model pixel comes from, fitted on coordinate-coded probe
  images (a horizontal and a vertical ramp, and two constants that tell content from painted
  padding); refused in one line when the function is not a separable, monotone resampling.

Everything here is pure numpy over the function's outputs (no model run, no query).
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BlackboxCamError

FLOAT_DTYPES = (np.float16, np.float32, np.float64)


@dataclass(frozen=True)
class VendorFunction:
    """A loaded vendor function: the callable, where it came from, and the file's SHA-256."""

    fn: Callable[..., Any]
    name: str                     # "FILE.py:NAME", or the callable's qualified name
    kind: str                     # "preprocess_fn" or "postprocess_fn"
    file: Path | None = None      # the imported file (None for a callable given in Python)
    sha256: str | None = None     # of the file's bytes, or of the function's source when it has one

    def describe(self) -> str:
        digest = f", sha256 {self.sha256[:12]}" if self.sha256 else ""
        return f"{self.kind} {self.name}{digest}"

    def record(self) -> dict[str, Any]:
        """JSON-ready: what ``explain.json`` and the map cache key carry."""
        return {"name": self.name, "file": None if self.file is None else str(self.file), "sha256": self.sha256}

    # -- preprocess -------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray, expect: Sequence[int | None], dtype: Any, *,
                   what: str = "the image") -> np.ndarray:
        """Run the function on one image; its output as one model input (no batch axis), checked.

        ``expect`` is the model input's dims without the batch axis (ints, or None where the graph
        leaves them symbolic), ``dtype`` the input's numpy dtype.
        """
        try:
            out = self.fn(image)
        except Exception as e:  # the vendor's code: anything may happen
            raise BlackboxCamError(f"{self.name} raised {type(e).__name__} on {what} "
                                   f"({str(e).splitlines()[0][:160] if str(e) else 'no message'}); "
                                   "it is called with one H x W x 3 uint8 RGB array") from None
        return self.check_output(out, expect, dtype, what=what)

    def check_output(self, out: Any, expect: Sequence[int | None], dtype: Any, *, what: str) -> np.ndarray:
        """``out`` as one model input, or one line saying what is wrong with it."""
        if not isinstance(out, np.ndarray):
            raise BlackboxCamError(f"{self.name} returned {type(out).__name__} for {what}; it must return a NumPy "
                                   "array, the model's input for that image")
        rank = len(expect)
        if out.ndim == rank + 1 and out.shape[0] == 1:
            out = out[0]
        if out.ndim != rank or any(e is not None and e != s for e, s in zip(expect, out.shape)):
            want = "[" + ", ".join("?" if e is None else str(e) for e in expect) + "]"
            raise BlackboxCamError(f"{self.name} returned shape {list(out.shape)} for {what}; the model takes {want} "
                                   "per image (the batch axis optional, in the model's layout)")
        if not (out.dtype in FLOAT_DTYPES or out.dtype == np.dtype(dtype)):
            raise BlackboxCamError(f"{self.name} returned dtype {out.dtype} for {what}; return float or the model's "
                                   f"input dtype ({np.dtype(dtype).name})")
        bad = ~np.isfinite(out.astype(np.float64, copy=False))
        if bad.any():
            raise BlackboxCamError(f"{self.name} returned {int(bad.sum())} NaN/inf value(s) of {out.size} for {what}")
        return out

    # -- postprocess ------------------------------------------------------------------------------
    def postprocess(self, outputs: list[np.ndarray], n: int) -> np.ndarray:
        """The model's raw outputs for a batch of ``n`` -> ``[n, classes]`` scores, checked."""
        try:
            out = self.fn(outputs)
        except Exception as e:
            raise BlackboxCamError(f"{self.name} raised {type(e).__name__} on the model's outputs "
                                   f"({str(e).splitlines()[0][:160] if str(e) else 'no message'}); it is called "
                                   "with the list of the model's outputs for a batch") from None
        if not isinstance(out, np.ndarray):
            raise BlackboxCamError(f"{self.name} returned {type(out).__name__}; it must return a NumPy array "
                                   "[N, classes]")
        if out.ndim == 1:
            out = out[:, None]
        if out.ndim != 2 or out.shape[0] != n:
            raise BlackboxCamError(f"{self.name} returned shape {list(out.shape)} for a batch of {n}; it must "
                                   f"return the scores to explain as [{n}, classes]")
        if not np.issubdtype(out.dtype, np.number):
            raise BlackboxCamError(f"{self.name} returned dtype {out.dtype}; return numbers [N, classes]")
        bad = ~np.isfinite(out.astype(np.float64))
        if bad.any():
            raise BlackboxCamError(f"{self.name} returned {int(bad.sum())} NaN/inf value(s) of {out.size}")
        return out.astype(np.float32)


def _sha256_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def load_function(spec: str | Callable[..., Any], kind: str, base: Path | None = None,
                  source: str = "") -> VendorFunction:
    """``"FILE.py:NAME"`` (``FILE`` relative to ``base``, default the working folder) or a callable.

    Every failure is one line naming ``source`` (the sidecar or the flag) and the file: no such
    file, not Python, an import that raises, no such function, not callable.
    """
    where = f"{source}: " if source else ""
    if callable(spec):
        try:
            src = inspect.getsource(spec)
            digest = hashlib.sha256(src.encode()).hexdigest()
        except (OSError, TypeError):
            digest = None
        name = getattr(spec, "__qualname__", None) or type(spec).__name__
        mod = getattr(spec, "__module__", None)
        return VendorFunction(spec, f"{mod}.{name}" if mod and mod != "__main__" else name, kind, None, digest)
    if not isinstance(spec, str) or ":" not in spec:
        raise BlackboxCamError(f"{where}{kind} {spec!r} must be FILE.py:NAME (a Python file and the function in it)")
    file, _, name = spec.rpartition(":")
    p = Path(file)
    if not p.is_absolute() and base is not None:
        p = base / p
    if not p.is_file():
        raise BlackboxCamError(f"{where}{kind} file {p} does not exist (the path is relative to "
                               f"{'the sidecar' if base is not None else 'the working folder'})")
    if p.suffix != ".py":
        raise BlackboxCamError(f"{where}{kind} file {p} is not a .py file")
    digest = _sha256_file(p)
    mod_name = f"_blackbox_cam_vendor_{digest[:16]}"
    if mod_name in sys.modules:
        module = sys.modules[mod_name]
    else:
        spec_ = importlib.util.spec_from_file_location(mod_name, p)
        module = importlib.util.module_from_spec(spec_)
        try:
            spec_.loader.exec_module(module)
        except Exception as e:
            raise BlackboxCamError(f"{where}importing {p} for {kind} raised {type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:160] if str(e) else ''}") from None
        sys.modules[mod_name] = module
    fn = getattr(module, name, None)
    if fn is None:
        names = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                       and getattr(v, "__module__", None) == mod_name)
        raise BlackboxCamError(f"{where}{p} has no function {name!r} for {kind}"
                               + (f"; it defines {', '.join(names)}" if names else ""))
    if not callable(fn):
        raise BlackboxCamError(f"{where}{p}:{name} is a {type(fn).__name__}, not a function")
    return VendorFunction(fn, f"{p.name}:{name}", kind, p.resolve(), digest)


# -- probes -----------------------------------------------------------------------------------------
def channels_first(x: np.ndarray, layout: str) -> np.ndarray:
    """One model input (no batch axis) as ``(C, H, W)`` float64."""
    x = np.asarray(x, np.float64)
    return x.transpose(2, 0, 1) if layout == "NHWC" else x


@dataclass(frozen=True)
class Baseline:
    """The colour the function maps (closest) to model-space zero, and how close it gets."""

    colour: tuple[float, float, float]
    residual: float        # largest |model value| of the constant image in that colour, after clipping

    def describe(self) -> str:
        c = ", ".join(f"{v:.1f}" for v in self.colour)
        return f"baseline colour ({c}), the colour the function maps to model zero (probed)"


def probe_baseline(run: Callable[[np.ndarray], np.ndarray], hw: tuple[int, int]) -> Baseline:
    """Solve for the RGB colour whose constant image the function maps to model zero.

    ``run(uint8 image) -> (C, H, W)`` float. Four constant probes (black, and each channel at 255)
    give the per-channel response ``D`` (model channel x image channel) over the pixels that move;
    the colour ``v`` solves ``m0 + D v / 255 = 0`` in least squares (grey when the function keeps
    one channel), clipped to 0..255. Exact for any per-channel affine normalisation (mean/std,
    [-1, 1], BGR); the residual says how close a non-affine function gets.
    """
    h, w = hw
    black = run(np.zeros((h, w, 3), np.uint8))
    resp = []
    for c in range(3):
        im = np.zeros((h, w, 3), np.uint8)
        im[:, :, c] = 255
        resp.append(run(im) - black)
    moving = np.any(np.abs(np.stack(resp)) > 1e-9, axis=(0, 1))
    if not moving.any():
        return Baseline((0.0, 0.0, 0.0), float(np.abs(black).max()))
    m0 = black[:, moving].mean(axis=1)                        # (C,)
    D = np.stack([r[:, moving].mean(axis=1) for r in resp], axis=1)  # (C, 3)
    if np.linalg.matrix_rank(D, tol=1e-9) < 3:
        g = float(np.linalg.lstsq(D.sum(axis=1, keepdims=True), -m0, rcond=None)[0][0]) * 255.0
        colour = np.full(3, g)
    else:
        colour = np.linalg.lstsq(D, -m0, rcond=None)[0] * 255.0
    colour = np.clip(colour, 0.0, 255.0)
    im = np.broadcast_to(np.rint(colour).astype(np.uint8), (h, w, 3)).copy()
    res = float(np.abs(run(im)[:, moving]).max())
    return Baseline(tuple(float(v) for v in colour), res)


@dataclass(frozen=True)
class ProbedPlacement:
    """Where the function puts an ``image_hw`` image in the model input, fitted from probes.

    ``scale = (sy, sx)``: model pixels per image pixel; ``box = (x0, y0, x1, y1)``: the image region
    (pixel edges) the content covers; ``inner = (top, left, height, width)``: the content's
    rectangle in the model input; the rest is padding painted by the function. ``error`` is the
    largest misfit of the fitted map, in image pixels.
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    scale: tuple[float, float]
    box: tuple[float, float, float, float]
    inner: tuple[int, int, int, int]
    error: float

    def describe(self) -> str:
        top, left, nh, nw = self.inner
        ih, iw = self.input_hw
        sy, sx = self.scale
        sc = f"scale {sx:.4g}" if abs(sx - sy) < 1e-3 * max(sx, sy) else f"scale {sy:.4g} x {sx:.4g}"
        pads = [(n, v) for n, v in (("top", top), ("bottom", ih - top - nh), ("left", left),
                                    ("right", iw - left - nw)) if v > 0]
        pad = ", ".join(f"padding {n} {v} px" for n, v in pads) or "no padding"
        x0, y0, x1, y1 = self.box
        h, w = self.image_hw
        seen = "the whole image" if (x0, y0, x1, y1) == (0.0, 0.0, float(w), float(h)) or max(
            abs(x0), abs(y0), abs(x1 - w), abs(y1 - h)) < 0.5 else f"image box ({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f})"
        return f"{sc}, offset ({top}, {left}), {pad}, {seen} (fit error {self.error:.2f} px)"


def probe_geometry(run: Callable[[np.ndarray], np.ndarray], image_hw: tuple[int, int],
                   name: str = "preprocess_fn") -> ProbedPlacement:
    """Fit where each model pixel of an ``image_hw`` image comes from.

    Probes (no model run): black and white constants (a model pixel whose value does not move
    between them is painted padding), a horizontal and a vertical grey ramp (value = pixel centre
    coordinate scaled to 0..255). Each content pixel's source coordinate is read back through the
    per-pixel affine response, and ``source = a * (model + 0.5) + b`` is fitted per axis by least
    squares. Refused (one line) when the content is not one rectangle, when a coordinate depends
    on the other axis, when the fit misses by more than the ramp's 8-bit step plus one pixel, or
    when the scale is not positive: then the function is not a geometric resampling, and maps
    in model space cannot be placed on the image (the black-box methods, which mask the image
    itself, still work).
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    lo = run(np.zeros((h, w, 3), np.uint8)).mean(axis=0)
    hi = run(np.full((h, w, 3), 255, np.uint8)).mean(axis=0)
    span = hi - lo
    content = np.abs(span) > 1e-6 * max(1.0, float(np.abs(span).max()))
    input_hw = content.shape
    refuse = f"{name} is not a geometric resampling of the image ({{}}); white-box maps cannot be placed " \
             "on the image (the black-box methods still work)"
    if not content.any():
        raise BlackboxCamError(refuse.format("no model pixel depends on the image"))
    rows, cols = np.where(content.any(axis=1))[0], np.where(content.any(axis=0))[0]
    top, left = int(rows[0]), int(cols[0])
    nh, nw = int(rows[-1] - top + 1), int(cols[-1] - left + 1)
    if not content[top:top + nh, left:left + nw].all() or content.sum() != nh * nw:
        raise BlackboxCamError(refuse.format("the pixels that depend on the image are not one rectangle"))
    coords = []
    for axis, n in ((1, w), (0, h)):
        ramp = np.linspace(0.0, 255.0, n) if n > 1 else np.zeros(1)
        img = np.broadcast_to(ramp[None, :] if axis == 1 else ramp[:, None], (h, w))
        img = np.repeat(np.rint(img).astype(np.uint8)[:, :, None], 3, axis=2)
        v = (run(img).mean(axis=0) - lo) / np.where(content, span, 1.0)
        coords.append(v[top:top + nh, left:left + nw] * (n - 1) + 0.5)   # source pixel-edge coordinate
    sx_, sy_ = coords
    step = (max(w, h) - 1) / 255.0
    tol = 1.0 + step
    if float(np.abs(sx_ - sx_.mean(axis=0, keepdims=True)).max()) > tol or \
            float(np.abs(sy_ - sy_.mean(axis=1, keepdims=True)).max()) > tol:
        raise BlackboxCamError(refuse.format("a model column's source column changes along the rows, or a row's "
                                             "along the columns: a rotation, a shear or a non-spatial step"))
    fits, err = [], 0.0
    for src, count in ((sy_.mean(axis=1), nh), (sx_.mean(axis=0), nw)):
        u = np.arange(count) + 0.5
        if count > 1:
            a, b = np.polyfit(u, src, 1)
        else:
            a, b = 1.0, float(src[0]) - 0.5
        err = max(err, float(np.abs(a * u + b - src).max()))
        fits.append((float(a), float(b)))
    (ay, by), (ax, bx) = fits
    if ay <= 0 or ax <= 0:
        raise BlackboxCamError(refuse.format("the image is flipped"))
    if err > tol:
        raise BlackboxCamError(refuse.format(f"a linear map misses by {err:.1f} image pixels"))
    box = (bx, by, ax * nw + bx, ay * nh + by)
    # within a twentieth of a pixel of an edge is the edge (8-bit ramps cannot say more)
    box = tuple(float(lim if abs(v - lim) < 0.05 else 0.0 if abs(v) < 0.05 else np.clip(v, 0.0, lim))
                for v, lim in zip(box, (w, h, w, h)))
    return ProbedPlacement((h, w), (int(input_hw[0]), int(input_hw[1])), (1.0 / ay, 1.0 / ax), box,
                           (top, left, nh, nw), err)


@dataclass
class FunctionGeometry:
    """The geometry of a ``preprocess_fn`` pipeline, measured instead of declared.

    Black-box maps are made on the image itself (the image is masked before the function), so
    they are already in the image's pixels; white-box maps are in the model's and go back through
    the probed placement of the image's size (probed once per size, cached).
    """

    run: Callable[[np.ndarray], np.ndarray]
    name: str = "preprocess_fn"
    _cache: dict = field(default_factory=dict)
    probed = True  # (class attribute) maps say which space they are in: see :meth:`to_image`
    auto_stride = None  # (class attribute) the declared geometry's letterbox_auto: the function sizes its own input

    def place(self, image_hw: tuple[int, int]) -> ProbedPlacement:
        key = (int(image_hw[0]), int(image_hw[1]))
        if key not in self._cache:
            try:
                self._cache[key] = probe_geometry(self.run, key, self.name)
            except BlackboxCamError as e:
                self._cache[key] = e
        got = self._cache[key]
        if isinstance(got, BlackboxCamError):
            raise got
        return got

    def to_image(self, saliency: np.ndarray, image_hw: tuple[int, int], model_space: bool | None = None) -> np.ndarray:
        """A map on the ``image_hw`` image: unchanged when it is already there (black-box), else
        through the probed placement (white-box); ``model_space`` says which when the sizes agree."""
        from .geometry import placed_to_image

        if model_space is None:
            model_space = tuple(saliency.shape[:2]) != tuple(image_hw)
        if not model_space:
            return np.asarray(saliency, np.float32)
        pl = self.place(image_hw)
        return placed_to_image(saliency, pl.image_hw, pl.box, pl.inner)

    def describe(self, image_hw: tuple[int, int] | None = None) -> str:
        if image_hw is None:
            return f"{self.name} (geometry probed per image size)"
        try:
            return f"{self.name}: {self.place(image_hw).describe()}"
        except BlackboxCamError as e:
            return f"{self.name}: not a geometric resampling ({str(e).split('(', 1)[1].split(')')[0]})"
