"""The evidence gate: fail a build when a model's saliency lies where it must not.

Borg et al. [1]_ propose a heat-map test as a step of an MLOps pipeline: with a fixed camera,
some pixels are known to be invalid evidence (a timestamp overlay, a watermark, the sky), and a
model that relies on them passes accuracy tests yet fails in the field. Their replication
package averages Grad-CAM maps over a folder and leaves the pass/fail rule open; this module
makes the rule explicit, for any method (black- or white-box).

The rule, per image, on the map ``s`` (the image's size) with forbidden region ``F`` and
optional required region ``R`` (boolean masks, :mod:`blackbox_cam.jobs.gate.regions`):

* ``share_F = sum(s+ inside F) / sum(s+)`` with ``s+ = max(s, 0)`` (:func:`evidence_share`);
  the image fails if ``share_F > max_share``;
* it fails if the map's maximum lies inside ``F`` (:func:`peak_in`): a model whose single
  strongest evidence is a forbidden pixel fails whatever the share;
* with ``R``: it fails if ``share_R < min_share``;
* a map with no positive mass fails: the gate cannot tell where such a model looks.

A run (one method over many images) fails if the fraction of failing images exceeds
``max_fail_rate`` (default 0: any failing image fails the build), or if any image could not be
checked at all (unreadable file, model error): a gate must not pass what it did not see.

Why ``max_share = 0.3`` by default: under a map that ignores the region the share is about the
region's area fraction (a few percent for an overlay or a watermark; ``forbidden_area`` in
every record says how much). Saliency maps are blurry: DE-CAM and RISE work on 7-8 cells per
side and Grad-CAM is upsampled from a 7x7 to 16x16 feature map, so evidence next to a region
spills roughly one cell into it. 0.3 leaves room for that spill while catching a model that
puts a substantial part of its evidence on pixels that carry none; together with the peak
rule it is strict enough that the bundled Clever-Hans demo fails and its clean twin passes
(``models/clever_hans/``). ``min_share = 0.5`` (used only with ``--require``) asks that most
of the evidence lies in the required zone.

Boundaries are inclusive on the passing side: ``share_F == max_share``, ``share_R == min_share``
and ``fail_rate == max_fail_rate`` pass.

References
----------
.. [1] M. Borg, R. Jabangwe, S. Aberg, A. Ekblom, L. Hedlund, A. Lidfeldt, "Test Automation
   with Grad-CAM Heatmaps - A Future Pipe Segment in MLOps for Vision AI?", ICSTW 2021
   (arXiv:2103.01837); replication package github.com/augustlidfeldt/ETSN20.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ...errors import BlackboxCamError
from ...pictures.display import Shows, display_size, grid
from ...pictures.render import region_overlay
from .regions import Region, check_regions, image_shape, union

#: Failure overlays a report keeps for display (the CLI writes every one to OUT/overlays/).
KEEP_PICTURES = 24

#: Defaults of the rule (the reasons are in the module docstring).
MAX_SHARE = 0.3
MIN_SHARE = 0.5
MAX_FAIL_RATE = 0.0


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class GateRule:
    """Thresholds of the gate, each a fraction in [0, 1] (checked here, before any query)."""

    max_share: float = MAX_SHARE
    min_share: float = MIN_SHARE
    max_fail_rate: float = MAX_FAIL_RATE

    def __post_init__(self) -> None:
        for name in ("max_share", "min_share", "max_fail_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise BlackboxCamError(f"--{name.replace('_', '-')} {v!r} is outside [0, 1]; it is a fraction "
                                       f"(e.g. {getattr(GateRule, name)})")


def evidence_share(saliency: np.ndarray, region: np.ndarray) -> float | None:
    """Share of the positive evidence inside ``region`` (Borg et al. 2021's "invalid pixels" test).

    ``share = sum_{p in R} max(s_p, 0) / sum_p max(s_p, 0)``; ``None`` for a map with no positive
    mass (the share is undefined there).
    """
    pos = np.maximum(np.asarray(saliency, np.float64), 0.0)
    total = float(pos.sum())
    return None if total <= 0.0 else float(pos[region].sum()) / total


def peak_in(saliency: np.ndarray, region: np.ndarray) -> bool:
    """Whether the map's maximum lies in ``region``; with ties, whether any maximal pixel does
    (conservative: a forbidden pixel as strong as the best allowed one is already suspect)."""
    s = np.asarray(saliency)
    return bool(region[s >= s.max()].any())


def fail_rate(failed: int, checked: int) -> float:
    """Fraction of checked images that failed (0 when none were checked)."""
    return failed / checked if checked else 0.0


@dataclass(frozen=True)
class ImageCheck:
    """The rule applied to one map: the measured numbers and why it failed (empty = passed)."""

    share_forbidden: float | None
    peak_in_forbidden: bool
    share_required: float | None
    forbidden_area: float | None   # fraction of the image's pixels in the forbidden region
    required_area: float | None
    reasons: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.reasons


def check_map(saliency: np.ndarray, forbidden: np.ndarray | None, required: np.ndarray | None,
              rule: GateRule = GateRule()) -> ImageCheck:
    """Apply the gate's rule (module docstring) to one map and its regions (masks of the map's shape)."""
    s = np.asarray(saliency, np.float32)
    for name, m in (("forbidden", forbidden), ("required", required)):
        if m is not None and m.shape != s.shape:
            raise ValueError(f"{name} region {m.shape} and map {s.shape} differ in size")
    reasons: list[str] = []
    empty = not np.isfinite(s).all() or float(np.maximum(s, 0).sum()) <= 0.0
    if empty:
        reasons.append("the map has no positive evidence, so the gate cannot tell where the model looks")
    share_f = share_r = None
    peak = False
    if forbidden is not None and not empty:
        share_f = evidence_share(s, forbidden)
        peak = peak_in(s, forbidden)
        if share_f > rule.max_share:
            reasons.append(f"forbidden share {share_f:.3f} > max-share {rule.max_share:g}")
        if peak:
            reasons.append("the map's maximum lies in the forbidden region")
    if required is not None and not empty:
        share_r = evidence_share(s, required)
        if share_r < rule.min_share:
            reasons.append(f"required share {share_r:.3f} < min-share {rule.min_share:g}")
    area = (lambda m: None if m is None else float(m.mean()))
    return ImageCheck(share_f, peak, share_r, area(forbidden), area(required), tuple(reasons))


# --------------------------------------------------------------------------- a run


@dataclass
class GateCase:
    """One image explained by one method and checked (or the error that prevented it)."""

    image: str
    method: str
    check: ImageCheck | None = None
    error: str | None = None
    predicted: int | None = None
    label: str | None = None
    score: float | None = None
    target: int | None = None
    queries: int | None = None
    seconds: float = 0.0
    cached: bool = False
    overlay: str | None = None   # file name of the failure overlay, set by whoever writes it
    picture: Any = field(default=None, repr=False, compare=False)  # the failure overlay kept for display
    detection: int | None = None   # a detector's: the detection's index in its image
    box: list[float] | None = None  # and its box, file pixels

    @property
    def name(self) -> str:
        """The test case's name: the image, and on a detector its detection."""
        return self.image if self.detection is None else f"{self.image}#det{self.detection}"


    @property
    def passed(self) -> bool:
        return self.error is None and self.check is not None and self.check.passed

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"image": self.image, "method": self.method, "passed": self.passed}
        if self.detection is not None:
            d.update(detection=self.detection, box=self.box)
        if self.error is not None:
            d["error"] = self.error
            return d
        c = self.check
        assert c is not None
        d.update({"share_forbidden": c.share_forbidden, "peak_in_forbidden": c.peak_in_forbidden,
                  "share_required": c.share_required, "forbidden_area": c.forbidden_area,
                  "required_area": c.required_area, "reasons": list(c.reasons), "predicted": self.predicted,
                  "label": self.label, "score": self.score, "target": self.target, "queries": self.queries,
                  "seconds": round(self.seconds, 3), "cached": self.cached, "overlay": self.overlay})
        return d


@dataclass(frozen=True)
class MethodVerdict:
    """The run verdict for one method: counts, fail rate, and whether the gate passes."""

    method: str
    images: int
    failed: int
    errors: int
    fail_rate: float
    passed: bool


def method_verdict(method: str, cases: Sequence[GateCase], rule: GateRule) -> MethodVerdict:
    """Fail if ``failed / checked > max_fail_rate`` or any image could not be checked."""
    errors = sum(c.error is not None for c in cases)
    failed = sum(c.error is None and not c.passed for c in cases)
    rate = fail_rate(failed, len(cases) - errors)
    return MethodVerdict(method, len(cases), failed, errors, rate,
                         errors == 0 and len(cases) > 0 and rate <= rule.max_fail_rate)


@dataclass(repr=False)
class GateReport(Shows):
    """Everything a gate run measured; :meth:`to_dict` is ``gate.json``.

    Shows itself (:class:`~blackbox_cam.pictures.display.Shows`): its picture is the failing
    images' overlays (:func:`failure_picture`, those ``run_gate`` kept) under the verdict; a gate
    with no failing image has no picture and shows its :meth:`summary` line.
    """

    model: str
    methods: list[str]
    rule: GateRule
    forbid: list[str]
    require: list[str]
    cases: list[GateCase] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[dict[str, str]] = field(default_factory=list)   # non-image files found in folders

    def by_method(self, method: str) -> list[GateCase]:
        return [c for c in self.cases if c.method == method]

    @property
    def verdicts(self) -> list[MethodVerdict]:
        return [method_verdict(m, self.by_method(m), self.rule) for m in self.methods]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts)

    def picture(self):
        """The kept failure overlays in a grid under the summary line (None if none failed)."""
        pics = [c.picture for c in self.cases if c.picture is not None]
        return grid(pics, cols=4, title=self.summary()) if pics else None

    def describe(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<GateReport {self.summary()}>"

    def summary(self) -> str:
        """One line: the verdict, then per method the failing count and the worst share."""
        parts = []
        for v in self.verdicts:
            cases = [c for c in self.by_method(v.method) if c.check is not None and c.check.share_forbidden is not None]
            worst = max(cases, key=lambda c: c.check.share_forbidden, default=None)
            why = _why(self.by_method(v.method))
            unit = "detections" if any(c.detection is not None for c in self.by_method(v.method)) else "images"
            text = (f"{v.method}: {v.failed}/{v.images - v.errors} {unit} failed{f' ({why})' if why else ''}, "
                    f"fail rate {v.fail_rate:.3g} {'<=' if v.fail_rate <= self.rule.max_fail_rate else '>'} "
                    f"max {self.rule.max_fail_rate:g}")
            if v.errors:
                text += f", {v.errors} not checked"
            if worst is not None:
                text += f", worst forbidden share {worst.check.share_forbidden:.3f} ({worst.name})"
            parts.append(text)
        return f"gate {'passed' if self.passed else 'FAILED'}: {Path(self.model).name} " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "methods": self.methods, "passed": self.passed,
                "rule": {"max_share": self.rule.max_share, "min_share": self.rule.min_share,
                         "max_fail_rate": self.rule.max_fail_rate},
                "forbid": self.forbid, "require": self.require,
                "verdicts": [v.__dict__ for v in self.verdicts], "seconds": round(self.seconds, 3),
                "images": [c.to_dict() for c in self.cases], "skipped": self.skipped}


def _why(cases: Sequence[GateCase]) -> str:
    """How many images failed by which rule, e.g. ``"3 by share, 8 by peak"``."""
    counts = {"share": 0, "peak": 0, "required share": 0, "empty map": 0}
    for c in cases:
        for r in (c.check.reasons if c.check is not None else ()):
            key = ("share" if r.startswith("forbidden share") else "peak" if "maximum" in r
                   else "required share" if r.startswith("required") else "empty map")
            counts[key] += 1
    return ", ".join(f"{n} by {k}" for k, n in counts.items() if n)


@dataclass(frozen=True)
class ArrayImage:
    """An in-memory ``H x W x 3`` RGB image (0..255) to gate, with a display name; no cache digest."""

    name: str
    array: np.ndarray
    path: None = None
    error: None = None

    def load(self) -> np.ndarray:
        return self.array

    def read(self) -> tuple[np.ndarray, tuple[int, int]]:
        return self.array, self.array.shape[:2]

    def digest(self) -> None:
        return None

    def stem(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name) or "image"


def as_items(images: Iterable[Any]) -> list[Any]:
    """Files, folders and manifest CSVs (:func:`blackbox_cam.jobs.dataset.expand_inputs`), dataset
    items, or ``H x W x 3`` arrays -> the list of images to gate, in order."""
    from ..dataset import Item, expand_inputs

    images = list(images)
    if all(isinstance(im, (str, os.PathLike)) for im in images):
        return expand_inputs(images)
    out: list[Any] = []
    for i, im in enumerate(images):
        if isinstance(im, (Item, ArrayImage)):
            out.append(im)
        elif isinstance(im, np.ndarray):
            arr = np.asarray(im, np.float32)
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise BlackboxCamError(f"image[{i}]: an image array must be H x W x 3 RGB (0..255), got {arr.shape}")
            out.append(ArrayImage(f"image[{i}]", arr))
        else:
            out.extend(expand_inputs([im]))
    return out


def item_name(item: Any) -> str:
    """How reports name an image: its path (as found), or the name of an in-memory image."""
    return str(item.path) if getattr(item, "path", None) is not None else item.name


def check_inputs(items: Sequence[Any], forbid: Sequence[Region], require: Sequence[Region]) -> None:
    """Every region fits every image whose size can be read (the usage errors, before any query).

    An image whose header cannot be read is left for later: it fails when loaded, as a recorded
    error of the run, not as a usage error.
    """
    if not forbid and not require:
        raise BlackboxCamError("no region given: pass --forbid REGION (and/or --require REGION), a mask image "
                               "or a box x0,y0,x1,y1")
    for item in items:
        if isinstance(item, ArrayImage):
            shape = item.array.shape[:2]
        elif getattr(item, "error", None) is None and item.path is not None:
            shape = image_shape(item.path)
        else:
            shape = None
        if shape is not None:
            check_regions([*forbid, *require], shape, item_name(item))


def failure_picture(case: GateCase, image: np.ndarray, saliency: np.ndarray, forbidden: np.ndarray | None,
                    required: np.ndarray | None) -> Any:
    """A failing image's overlay: the map, the forbidden region in magenta, the required one in
    white, the map's maximum marked, captioned with the image, method, class and reasons
    (``OUT/overlays/*.png``, :func:`blackbox_cam.pictures.render.region_overlay`)."""
    caption = f"{Path(case.name).name} ({case.method}, {case.label}): FAILED\n" + "; ".join(case.check.reasons)
    return region_overlay(image, saliency, forbidden, required, caption)


OnCase = Callable[[GateCase, Any, np.ndarray, np.ndarray, "np.ndarray | None", "np.ndarray | None"], None]


def run_gate(clf: Any, images: Iterable[Any], methods: Sequence[str] = ("decam",), *,
             forbid: Sequence[Region] = (), require: Sequence[Region] = (), rule: GateRule = GateRule(),
             target: str | int | None = None, budget: int | None = None, seed: int = 0,
             options: dict[str, Any] | None = None, cache: Any = None, on_case: OnCase | None = None,
             pictures: int = KEEP_PICTURES, executor: Any = None,
             progress: Callable[[Any], None] | None = None) -> GateReport:
    """Explain every image with every method and apply the rule; a bad image is recorded, not raised.

    Parameters
    ----------
    clf : the :class:`~blackbox_cam.model.runtime.Classifier`.
    images : files, folders, manifest CSVs (:func:`blackbox_cam.jobs.dataset.expand_inputs`), dataset
        items, or ``H x W x 3`` RGB arrays (0..255).
    methods : registered method names (:data:`blackbox_cam.methods.METHODS`).
    forbid, require : regions (:func:`blackbox_cam.jobs.gate.regions.parse_region`); several are united.
    rule : the thresholds.
    target, budget, seed : as for :func:`blackbox_cam.explainer.pipeline.explain_image` (default target: top-1).
    options : method options (``{"grid": 6, "layer": "..."}``), each given to the methods declaring it.
    cache : a :class:`blackbox_cam.jobs.dataset.MapCache`: maps already made for the same image
        content, model and settings are reused, so a nightly run only explains what is new.
    on_case : called after each checked image with ``(case, item, image, saliency, forbidden,
        required)`` (e.g. to draw the failure overlay).
    pictures : how many failing images keep their overlay (:func:`failure_picture`, at most 512
        pixels a side) for the report's picture; 0 keeps none.
    executor : where the maps are made (:mod:`blackbox_cam.jobs.executors`; default in this
        process); a Ray executor gives the same report but for the times.
    progress : called once per image as its maps arrive (a progress bar).

    Non-image files found in folders (a README, a LICENSE, a CSV) are listed in
    ``report.skipped``, never counted as images that could not be checked.

    Raises :class:`BlackboxCamError` before any query for a usage error: unknown method or
    option, bad budget, no region, a region that does not fit an image.
    """
    from ..dataset import explain_items
    from ...explainer.pipeline import resolve_target
    from ...methods import bind_all

    calls = bind_all(list(methods), budget, options or {}, clf=clf)
    items = as_items(images)
    check_inputs(items, forbid, require)
    if target is not None and str(target).lower() != "top1":
        target = resolve_target(clf, target)
    report = GateReport(str(getattr(clf, "path", clf)), list(methods), rule, [r.spec for r in forbid],
                        [r.spec for r in require])
    report.skipped = [{"image": item_name(it), "reason": it.error or ""} for it in items if getattr(it, "skip", False)]
    todo = [it for it in items if not getattr(it, "skip", False)]
    t_run = time.perf_counter()
    for im in explain_items(clf, todo, calls, target=None if target in (None, "top1") else target, seed=seed,
                            cache=cache, executor=executor):
        item = im.item
        name = item_name(item)
        if progress is not None:
            progress(im)
        try:
            if im.error is not None:
                raise BlackboxCamError(im.error)
            check_regions([*forbid, *require], im.size, name)
            fmask = union(forbid, im.image.shape[:2], im.size)
            rmask = union(require, im.image.shape[:2], im.size)
        except BlackboxCamError as e:
            report.cases.extend(GateCase(name, m, error=str(e)) for m in methods)
            continue
        for m in methods:
            case = GateCase(name, m)
            if m in im.errors:
                case.error = im.errors[m]
                report.cases.append(case)
                continue
            res, fresh = im.results[m]
            case.cached = not fresh
            case.seconds = float(res.explanation.seconds)
            case.check = check_map(res.saliency, fmask, rmask, rule)
            case.predicted, case.target, case.score = res.predicted, res.target, res.score
            case.label = clf.label(res.target) if hasattr(clf, "label") else None
            case.queries = res.explanation.queries
            report.cases.append(case)
            if not case.passed and sum(c.picture is not None for c in report.cases) < pictures:
                case.picture = display_size(failure_picture(case, im.image, res.saliency, fmask, rmask), max_side=512)
            if on_case is not None:
                on_case(case, item, im.image, res.saliency, fmask, rmask)
    report.seconds = time.perf_counter() - t_run
    return report
