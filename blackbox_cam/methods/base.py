"""The method contract: what a saliency method declares, how it is called, what it returns.

A method is a *hook* ``hook(clf, x, target, *, budget, seed, score, **options) -> MethodOutput``
registered with :func:`register`, which declares its options (:class:`~.options.Option`), its
default and minimum query budget. ``clf`` is a :class:`blackbox_cam.model.runtime.Classifier` (or a detector), ``x``
the preprocessed image in model space (float32, channels-first ``(C, H, W)`` at the model's
input size), ``target`` a class index, ``budget`` the queries the hook may spend (``None``:
no limit), ``score`` the target's probability on the unmasked image (already paid for).
The hook returns the map at the model's input resolution, the parameters it chose itself
(DE-CAM's population, occlusion's stride, Grad-CAM's layer) and method-specific extras.

Targets (:mod:`.targets`). A method registered with ``multi=True`` (the black-box ones) takes a
*target object* instead of an index: a :class:`~.targets.ClassTarget` or a
:class:`~.targets.DetectionTarget` holding ``T`` things to explain, whose ``scores(model, batch)``
is the ``[N, T]`` matrix the method reads; ``score`` is then the ``[T]`` unmasked scores and the
hook returns ``T`` outputs made from the **same** queries (every detection of an image from one
query set). ``kinds`` says which target kinds a method explains; a hook that is not ``multi``
gets an ``int`` class (or, if it declares ``"detection"``, one single-detection target) and is
called once per target. :meth:`Call.run_targets` is the entry point for several targets;
:meth:`Call.run` with an ``int`` is unchanged.

The registry does the rest, once, in one place (:meth:`MethodSpec.bind`, :meth:`Call.run`):
it checks the options and the budget before any query, applies the default budget, scores the
unmasked image when the caller has not, enforces the budget, counts the queries and builds the
:class:`Explanation`; nothing patches it afterwards.

Callers use ``METHODS[name].fn(clf, x, target, budget=..., seed=..., **options)`` (the same as
``METHODS[name].run``) for an :class:`Explanation`; :func:`blackbox_cam.explainer.pipeline.explain_image`
does that for an image at its own resolution. Registering makes a method appear in the CLI's
``--methods`` and its options as CLI flags (the CLI reads :data:`METHODS`, so the two cannot drift).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from ..errors import BlackboxCamError
from .options import Option, suggest
from .targets import AnyTarget, as_target
from .uncertainty import AutoBudget, Rounds, no_information, parse_budget


def one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS (numpy's OpenBLAS) on one thread while a black-box method alternates its own numpy
    work with model calls. OpenBLAS's idle threads spin for a while after every call, on the very
    cores the model runs on next: the first model call after DE-CAM's ridge update ran 37 % slower
    per image, and DE-CAM reached 0.85 of raw ONNX Runtime throughput instead of 0.95+
    (``bench/bench_decam.py``, 2 cores, issue 30). The method's own BLAS work is small (a
    ``d x d`` update and one solve per image, ``d <= 1024``), so one thread costs it nothing
    measurable. Uses threadpoolctl (scikit-learn's) and restores the previous limits. The loaded
    libraries are looked up on every call (about 2 ms, 0.1 % of a 300-query explanation), since a
    BLAS loaded later in the process (another package's own OpenBLAS) must be held too."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class Explanation:
    """A saliency map and how it was obtained (built once by :meth:`Call.run`).

    Attributes
    ----------
    saliency : float32 array (H, W) in [0, 1] at the model's input size, high = important for ``target``.
    target : class index explained.
    score : the target's probability on the unmasked image (its log-odds when the classifier
        explains ``score_kind == "log-odds"``, ``params["score"]`` then says so).
    queries : images the model was asked to score for this explanation, the unmasked prediction
        included; this is what the budget limits. White-box methods: 1 (the unmasked prediction);
        their gradient run is a second graph, not a query of the black box, and is not counted.
    seconds : wall time, the unmasked prediction included when :meth:`Call.run` made it.
    params : the effective parameters: the budget (black-box), the seed (black-box), every
        declared option with defaults filled in, and what the method chose itself.
    method : registry name.
    extra : method-specific results (e.g. DE-CAM's best mask and fitness history).
    warning : one line when the map carries no information (constant, e.g. all zero; or, for a
        black-box method, no query moved the target beyond noise: :func:`.uncertainty.no_information`),
        else ``None``.
    se : float32 (H, W), the map's standard error on the map's own [0, 1] scale (black-box
        methods; :mod:`.uncertainty` says how each estimator's is computed), else ``None``.
    uncertainty : JSON-ready: which standard error, the split-half stability, the share of the
        top-20 % region significantly above zero, the largest z, the score spread and, under
        ``--budget auto``, the stop record (``auto``), else ``None``.
    detection : the one detection explained (a single-row :class:`~.targets.DetectionTarget`:
        box, class vector, objectness, index) when the target was a detection, else ``None``;
        ``target`` is then its class and ``score`` its D-RISE similarity on the unmasked image.
        Explanations made together (:meth:`Call.run_targets`) share their ``queries`` and ``seconds``.
    """

    saliency: np.ndarray
    target: int
    score: float
    queries: int
    seconds: float
    params: dict[str, Any]
    method: str
    extra: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None
    se: np.ndarray | None = None
    uncertainty: dict[str, Any] | None = None
    detection: Any = None


def flat_map_warning(saliency: np.ndarray, method: str, whitebox: bool, score: float,
                     layer: str | None = None) -> str | None:
    """The one-line warning for a map that says nothing (every pixel equal), else ``None``.

    Such a map is still written (the user asked for it), but never handed over as if it showed
    evidence: for the Grad-CAM family it means no positive gradient-weighted activation at the
    layer (a saturated class, whose score barely moves, or a dead layer); for a black-box method
    that no perturbation moved the score.
    """
    s = np.asarray(saliency)
    if s.size == 0 or not np.all(np.isfinite(s)) or float(s.max() - s.min()) > 1e-12:
        return None
    what = "all zero" if float(s.max()) == 0 else f"{float(s.flat[0]):g} everywhere"
    if whitebox:
        why = (f"no positive evidence at {layer or 'the layer'} (a saturated class, p = {score:.4g}, or a dead "
               "layer); try an earlier --layer or a black-box method")
    else:
        why = f"no perturbation moved the score (p = {score:.4g}: a saturated or insensitive class)"
    return f"the {method} map is {what} and carries no information: {why}"


@dataclass(frozen=True)
class MethodOutput:
    """What a hook returns: the map, the parameters it chose itself, and extras."""

    saliency: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Hook(Protocol):
    def __call__(self, clf: Any, x: np.ndarray, target: int, *, budget: int | None, seed: int,
                 score: float, **options: Any) -> MethodOutput: ...


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its hook, what it declares, and the one place it is called from.

    ``default_budget`` applies when the caller gives none (``None``: unlimited);
    ``min_budget`` is the smallest budget it can work with. Both count the unmasked
    prediction. White-box methods take no budget. ``budget_note`` says in words what an
    unlimited budget means (for ``--help``).
    """

    name: str
    hook: Hook
    whitebox: bool = False
    summary: str = ""
    options: tuple[Option, ...] = ()
    default_budget: int | None = None
    min_budget: int = 1
    budget_note: str = ""
    anytime: bool = False  # the hook takes ``auto=`` (a :class:`.uncertainty.Rounds`) and stops when settled
    check: Callable[[Any, Mapping[str, Any]], None] | None = None  # options against the model, before any image
    multi: bool = False  # the hook takes a target object of T targets and returns T outputs from one query set
    kinds: tuple[str, ...] = ("class",)  # the target kinds it explains (:mod:`.targets`)

    @property
    def option_names(self) -> list[str]:
        return [o.name for o in self.options]

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    @property
    def fn(self) -> Callable[..., Explanation]:
        """``fn(clf, x, target, *, budget=None, seed=0, score=None, **options) -> Explanation``."""
        return self.run

    def check_budget(self, budget: int | str | AutoBudget | None) -> int | None:
        """The budget to apply: the default filled in and the minimum checked (black-box);
        ``None`` for white-box methods, which read the graph instead of querying."""
        budget, auto = parse_budget(budget)
        if auto is not None:
            budget = auto.max_budget
        if budget is not None and (isinstance(budget, bool) or not float(budget).is_integer() or budget <= 0):
            raise BlackboxCamError(f"--budget must be a positive number of model queries, got {budget}")
        if self.whitebox:
            return None
        budget = self.default_budget if budget is None else int(budget)
        if budget is not None and budget < self.min_budget:
            raise BlackboxCamError(f"--budget {budget} is too small for {self.name}: it needs at least "
                                   f"{self.min_budget} model queries (the unmasked prediction included)")
        return budget

    def bind(self, budget: int | None = None, input_size: Sequence[int] | None = None,
             **options: Any) -> Call:
        """Check ``options`` and ``budget`` (no model query); every declared option filled in.

        ``input_size`` (the model's ``(H, W)``) also checks options bounded by the input side.
        """
        for key in options:
            if self.option(key) is None:
                raise BlackboxCamError(_not_taken(self, key))
        side = min(input_size) if input_size else None
        values = {o.name: o.check(self.name, options.get(o.name, o.default), side) for o in self.options}
        auto = None if self.whitebox else parse_budget(budget)[1]
        return Call(self, self.check_budget(budget), MappingProxyType(values), auto)

    def run(self, clf: Any, x: np.ndarray, target: AnyTarget, *, budget: int | None = None, seed: int = 0,
            score: float | None = None, **options: Any) -> Explanation:
        """:meth:`bind` then :meth:`Call.run`: an :class:`Explanation` of ``target`` for ``x``."""
        return self.bind(budget, getattr(clf, "input_size", None), **options).run(clf, x, target, seed=seed,
                                                                                   score=score)


@dataclass(frozen=True)
class Call:
    """A method with checked options and budget, ready to run on any number of images."""

    spec: MethodSpec
    budget: int | None
    options: Mapping[str, Any]
    auto: AutoBudget | None = None  # ``--budget auto``: ``budget`` is then the maximum

    def check(self, clf: Any) -> Call:
        """Check the options that depend on the model itself (Grad-CAM's ``--layer``) before any
        image is read: a bad value is one :class:`BlackboxCamError` for the whole run."""
        if self.spec.check is not None:
            self.spec.check(clf, self.options)
        return self

    def run(self, clf: Any, x: np.ndarray, target: AnyTarget, *, seed: int = 0,
            score: float | None = None) -> Explanation:
        """Explain ``target`` for the model-space image ``x`` within the budget.

        ``score`` is the target's probability on the unmasked image when the caller has already
        paid one query for it (counted here all the same, so ``queries`` and the budget mean the
        same whoever scores it); otherwise that query is made here. ``target`` is a class index
        or a target object holding one target (:meth:`run_targets` for several).
        """
        t = as_target(target)
        if t.count != 1:
            raise BlackboxCamError(f"Call.run explains one target, got {t.count}; use Call.run_targets")
        return self.run_targets(clf, x, t, seed=seed, scores=None if score is None else [score])[0]

    def run_targets(self, model: Any, x: np.ndarray, target: AnyTarget, *, seed: int = 0,
                    scores: Sequence[float] | np.ndarray | None = None) -> list[Explanation]:
        """One :class:`Explanation` per target of ``target`` (:mod:`.targets`), within the budget.

        A ``multi`` method makes all of them from one set of queries (each masked image scored
        once, every target read from the same model output); the explanations then share
        ``queries`` and ``seconds``. Another method runs once per target, each run within the
        budget. ``scores`` are the targets' unmasked scores when the caller already paid for them.
        """
        t = as_target(target)
        if t.kind not in self.spec.kinds:
            able = [m.name for m in METHODS.values() if t.kind in m.kinds]
            raise BlackboxCamError(f"{self.spec.name} does not explain a {t.kind}; choose from {', '.join(able)}")
        if t.count == 0:
            return []
        if not self.spec.multi:
            return [self._run_one(model, x, t.one(i), seed=seed, scores=None if scores is None else [scores[i]])[0]
                    for i in range(t.count)]
        return self._run_one(model, x, t, seed=seed, scores=scores)

    def _run_one(self, model: Any, x: np.ndarray, t: Any, *, seed: int,
                 scores: Sequence[float] | np.ndarray | None) -> list[Explanation]:
        """The one place a hook is called: budget, unmasked scores, queries, explanations."""
        t0, q0 = time.perf_counter(), model.queries
        paid = scores is not None
        quiet = contextlib.nullcontext() if self.spec.whitebox else one_blas_thread()
        with quiet, model.limit(None if self.budget is None else self.budget - paid):
            if scores is None:
                scores = t.scores(model, x[None])[0]
            scores = np.asarray(scores, np.float64).reshape(t.count)
            inner = None if self.budget is None else self.budget - 1
            rounds = None if self.auto is None or inner is None else Rounds(self.auto, self.budget)
            more = {"auto": rounds} if self.spec.anytime else {}
            if self.spec.multi:
                outs = self.spec.hook(model, x, t, budget=inner, seed=seed, score=scores, **self.options, **more)
                outs = [outs] if isinstance(outs, MethodOutput) else list(outs)
            else:
                arg = int(t.index) if t.kind == "class" else t
                outs = [self.spec.hook(model, x, arg, budget=inner, seed=seed, score=float(scores[0]),
                                       **self.options, **more)]
        if len(outs) != t.count:
            raise RuntimeError(f"{self.spec.name} returned {len(outs)} maps for {t.count} targets")
        queries = model.queries - q0 + paid
        seconds = time.perf_counter() - t0
        return [self._explanation(model, out, t.one(i), float(scores[i]), rounds, queries, seconds, seed)
                for i, out in enumerate(outs)]

    def _explanation(self, model: Any, out: MethodOutput, t: Any, score: float, rounds: Rounds | None, queries: int,
                     seconds: float, seed: int) -> Explanation:
        run = {} if self.spec.whitebox else {"budget": "auto" if rounds else self.budget, "seed": seed}
        kind = getattr(model, "score_kind", "probability")
        if kind != "probability" and not self.spec.whitebox:
            run["score"] = kind
        params = {**run, **self.options, **out.params}
        extra = dict(out.extra)
        unc = extra.pop("uncertainty", None)
        summary = dict(unc.summary) if unc is not None else None
        if rounds is not None:
            if not self.spec.anytime:
                rounds.reason = f"max-budget: {self.spec.name} does not run in rounds; it used its maximum budget"
            summary = {**(summary or {}), "auto": rounds.record()}
        if summary is not None and rounds is not None:
            summary["auto"]["queries"] = queries
        warning = flat_map_warning(out.saliency, self.spec.name, self.spec.whitebox, score,
                                   params.get("layer")) or no_information(summary, self.spec.name, score)
        if warning and not self.spec.whitebox and kind == "probability" and "saturated" in warning:
            warning += "; --score log-odds keeps moving where a saturated probability cannot"
        return Explanation(saliency=out.saliency, target=int(t.index), score=score,
                           queries=queries, seconds=seconds,
                           params=params, method=self.spec.name, extra=extra, warning=warning,
                           se=None if unc is None else unc.se, uncertainty=summary,
                           detection=t if t.kind == "detection" else None)


METHODS: dict[str, MethodSpec] = {}


def register(name: str, **declared: Any) -> Callable[[Hook], Hook]:
    """Add a hook to :data:`METHODS` under ``name``; ``declared`` are :class:`MethodSpec`'s
    fields (``whitebox``, ``summary``, ``options``, ``default_budget``, ...), declared there once.
    The summary defaults to the hook's first docstring line."""

    def deco(fn: Hook) -> Hook:
        if name in METHODS:
            raise ValueError(f"method {name!r} registered twice")
        fields = dict(declared)
        fields["summary"] = fields.get("summary") or (fn.__doc__ or "").strip().split("\n")[0]
        fields["options"] = tuple(fields.get("options", ()))
        METHODS[name] = MethodSpec(name=name, hook=fn, **fields)
        return fn

    return deco


def get_method(name: str) -> MethodSpec:
    """The registered method ``name``, or a one-line error with the closest name."""
    if name not in METHODS:
        close = suggest(name, METHODS).removeprefix("; ")
        raise BlackboxCamError(f"{name!r} is not a method; choose from {', '.join(METHODS)}"
                               + (f" ({close})" if close else ""))
    return METHODS[name]


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"decam,gradcam"`` -> ``["decam", "gradcam"]``; unknown, repeated or no names raise."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise BlackboxCamError(f"--methods is empty; choose from {', '.join(METHODS)}")
    for n in names:
        get_method(n)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BlackboxCamError(f"--methods lists {', '.join(dupes)} more than once")
    return names


def split_options(methods: Sequence[str], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Give each of ``methods`` the ``options`` it declares; an option none of them takes raises.

    One command line can run several methods (``-m decam,occlusion --grid 6 --window 8``):
    each option goes to the methods that declare it.
    """
    specs = [get_method(m) for m in methods]
    for key in options:
        if not any(s.option(key) for s in specs):
            raise BlackboxCamError(_not_taken(specs, key))
    return {s.name: {k: v for k, v in options.items() if s.option(k)} for s in specs}


def bind_all(methods: Sequence[str], budget: int | None = None, options: Mapping[str, Any] | None = None,
             input_size: Sequence[int] | None = None, *, clf: Any = None) -> dict[str, Call]:
    """Checked calls for several methods sharing one budget and one set of options
    (:func:`split_options`); raises before any model query if any of them is refused. With the
    classifier ``clf`` the options are also checked against the model (:meth:`Call.check`)."""
    per = split_options(methods, options or {})
    if clf is not None:
        input_size = clf.input_size
    calls = {m: METHODS[m].bind(budget, input_size, **per[m]) for m in methods}
    if clf is not None:
        for call in calls.values():
            call.check(clf)
    return calls


def _not_taken(specs: MethodSpec | Sequence[MethodSpec], key: str) -> str:
    """Why ``key`` is refused: another method takes it, a close name exists, or neither."""
    specs = [specs] if isinstance(specs, MethodSpec) else list(specs)
    names = ", ".join(s.name for s in specs)
    flag = "--" + key.replace("_", "-")
    takers = [s for s in METHODS.values() if s.option(key)]
    if takers:
        flag = takers[0].option(key).cli_flag
        return (f"{flag} is not an option of {names}; it is taken by {', '.join(s.name for s in takers)}"
                f" (add one to --methods or drop {flag})")
    own = sorted({o for s in specs for o in s.option_names})
    everyone = sorted({o for s in METHODS.values() for o in s.option_names})
    hint = suggest(key, own) or suggest(key, everyone)
    valid = f"options of {names}: {', '.join(own)}" if own else f"{names} takes no options"
    return f"unknown option {key!r}{hint} ({valid})"


def normalise(saliency: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1] (a constant map becomes all zeros), float32."""
    s = np.asarray(saliency, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi - lo <= 1e-12:
        return np.zeros(s.shape, np.float32)
    return ((s - lo) / (hi - lo)).astype(np.float32)
