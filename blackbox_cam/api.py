"""The one-call Python API: ``blackbox_cam.explain(model, image, method, **options)``.

``model`` is a path to an ``.onnx`` file or a :class:`~blackbox_cam.model.runtime.Classifier`;
``image`` is a path, a PIL image or an array, and several of them (a list, a folder or a
manifest CSV) give a list of results with a progress bar. Each
:class:`~blackbox_cam.explainer.pipeline.Result` shows itself in a notebook and saves itself as the CLI
does. :func:`plot_methods` draws several methods side by side on one image.

Everything here is built on :func:`blackbox_cam.explainer.pipeline.score_image` and
:func:`~blackbox_cam.explainer.pipeline.explain_scored`, the same pipeline as ``blackbox-cam explain``, so
a map made here equals the CLI's for the same model, image, method, budget and seed.
"""
from __future__ import annotations

import inspect
import os
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import BlackboxCamError
from .io.images import as_rgb
from .jobs.executors import named
from .model.open import DETECTOR_ONLY, open_model
from .model.runtime import Classifier, Model

#: Keyword arguments of :class:`Classifier` (and a detector's thresholds): in :func:`explain`
#: they load a model given as a path.
MODEL_OPTIONS = tuple(p for p in inspect.signature(Classifier.__init__).parameters
                      if p not in ("self", "path")) + DETECTOR_ONLY
_LOADED: OrderedDict[tuple, Model] = OrderedDict()
_KEEP = 4  # models kept loaded, most recently used first


def load_model(model: str | os.PathLike | Classifier, **options: Any) -> Classifier:
    """``model`` itself if it is a :class:`Classifier` (or a detector), else the model file loaded
    with ``options`` (preprocess, resize, labels, ...; see :class:`Classifier`) as a classifier or
    a detector, as the model reader decides (:func:`blackbox_cam.model.open.open_model`).

    A file is loaded once and reused by later calls with the same options while it is unchanged
    (the last 4 are kept), so a notebook's repeated ``explain(path, ...)`` does not reload it or
    rebuild its gradient graph.
    """
    if isinstance(model, Model):
        if options:
            raise BlackboxCamError(f"{', '.join(sorted(options))}: model options load a model from its file; "
                                   "the model is already loaded, so pass them to Classifier(...) instead")
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise BlackboxCamError(f"model must be an .onnx path or a blackbox_cam.Classifier, not {type(model).__name__}")
    p = Path(model)
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_mtime_ns, st.st_size, tuple(sorted((k, repr(v)) for k, v in options.items())))
    except OSError:
        return open_model(p, **options)  # the reader says what is wrong with the path
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    clf = open_model(p, **options)
    _LOADED[key] = clf
    while len(_LOADED) > _KEEP:
        _LOADED.popitem(last=False)
    return clf


class _Input:
    """One image to explain: where it came from and how to read it."""

    def __init__(self, source: str | None, stem: str | None, read) -> None:
        self.source, self.stem, self.read = source, stem, read


def _inputs(image: Any) -> tuple[list[_Input], bool]:
    """``(inputs, many)``: one input for a file, PIL image or array; a list for a folder, a
    manifest CSV or a list/tuple of any of them (``many`` = the caller gets a list back)."""
    from .jobs.dataset import expand_inputs

    def from_item(item) -> _Input:
        stem = item.path.stem if item.origin == "arg" else item.stem()
        return _Input(str(item.path), stem, item.read)

    def from_memory(obj, i: int | None) -> _Input:
        name = f"image[{i}]" if i is not None else "image"
        return _Input(None, None, lambda: (lambda a: (a, a.shape[:2]))(as_rgb(obj, name)))

    def expand(obj, i: int | None) -> list[_Input]:
        if isinstance(obj, (str, os.PathLike)):
            found = []
            for item in expand_inputs([obj]):
                if item.skip:
                    warnings.warn(item.error or f"{item.path}: skipped", stacklevel=4)
                else:
                    found.append(from_item(item))
            return found
        return [from_memory(obj, i)]

    if isinstance(image, (list, tuple)):
        return [inp for i, obj in enumerate(image) for inp in expand(obj, i)], True
    many = isinstance(image, (str, os.PathLike)) and (Path(image).is_dir() or Path(image).suffix.lower() == ".csv")
    return expand(image, None), many


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model options, method options)."""
    model = {k: options[k] for k in options if k in MODEL_OPTIONS}
    return model, {k: v for k, v in options.items() if k not in model}


def explain(model: str | os.PathLike | Classifier, image: Any, method: str = "decam", *,
            target: str | int | None = None, budget: int | None = None, seed: int = 0, progress: bool = True,
            detection: int | None = None, box: str | Sequence[float] | None = None,
            ray: str | bool | None = None, workers: int | None = None, **options: Any):
    """Explain ``image`` with ``model``: a :class:`~blackbox_cam.explainer.pipeline.Result`, or a list of them.

    For a **detector** the answer for one image is a list with one result per detection (each
    drawn with its box and label, all made from one query set: ``bc.explain(det, "street.jpg",
    "drise")``); ``target`` keeps the detections of one class, ``detection=K`` only the K-th,
    ``box=(x0, y0, x1, y1)`` with ``target=LABEL`` explains a box the model did not report, and
    ``conf``/``iou``/``max_detections`` (model options) set the thresholds. Several images give
    a list of such lists. An image with no detection gives an empty list and a warning.

    Parameters
    ----------
    model : an ``.onnx`` path (loaded once, see :func:`load_model`) or a :class:`Classifier`.
    image : an image file, a PIL image or an array (``H x W x 3`` RGB, uint8 or float, see
        :func:`~blackbox_cam.io.images.as_rgb`): one result. A folder (searched recursively), a
        manifest CSV or a list of any of these: a list of results, in order, with a ``tqdm`` progress bar (``progress``).
    method : a registered method (``decam``, ``rise``, ``occlusion``, ``gradcam``, ...).
    target : ``None``/``"top1"`` (each image's top-1 class), a class index or a label name.
    budget, seed : as for ``blackbox-cam explain`` (``budget`` None = the method's default).
    options : the method's options (``grid=6``, ``layer="..."``) and, for a model given as a
        path, the model's (``preprocess="imagenet"``, ``resize="crop"``, ...). Everything is
        checked before any image is read or the model is queried.

    ray : run the images as Ray tasks, as ``blackbox-cam explain --ray``: ``True`` or ``"local"``
        starts a local Ray runtime (or uses the one this process already started with
        ``ray.init()``, which keeps it warm between calls), an address joins a cluster
        (``"ray://head:10001"``). The results equal those of a run without it, for a
        detector too (each image's detections on one worker, from one query set).
    workers : with ``ray``: worker processes (default: one per CPU, or per GPU of the cluster).

    A bad image raises :class:`~blackbox_cam.errors.BlackboxCamError` naming it.
    """
    from .explainer.pipeline import explain_scored, resolve_target, score_image
    from .methods import bind_all, get_method

    model_opts, method_opts = _split(options)
    get_method(method).bind(budget, None, **method_opts)  # a bad option fails before the model is loaded
    clf = load_model(model, **model_opts)
    call = bind_all([method], budget, method_opts, clf=clf)[method]   # and against the model: --layer
    detector = getattr(clf, "task", "classifier") == "detector"
    if not detector and (detection is not None or box is not None):
        raise BlackboxCamError(f"{'detection' if detection is not None else 'box'}= applies to detectors; "
                               "this model is a classifier")
    if detector:
        from .explainer.detection_maps import parse_box
        if box is not None:
            parse_box(box)  # a malformed box fails before any image is read
    if target is not None and str(target).lower() != "top1":
        target = resolve_target(clf, target)
    inputs, many = _inputs(image)
    if many and not inputs:
        raise BlackboxCamError(f"{image}: no images to explain")
    if ray and detector:
        return _explain_detector_on_ray(clf, call, inputs, many, target, detection, box, seed, ray, workers,
                                        model_opts, progress)
    if ray:
        return _explain_on_ray(clf, call, inputs, many, target, seed, ray, workers, model_opts, progress)
    steps: Iterable[_Input] = inputs
    if many and progress:
        with warnings.catch_warnings():  # without ipywidgets tqdm.auto says so, then draws a text bar: fine
            warnings.filterwarnings("ignore", message="IProgress not found")
            from tqdm.auto import tqdm

        steps = tqdm(inputs, desc=f"{method}", unit="image")
    if workers is not None:
        raise BlackboxCamError("workers= needs ray= (e.g. ray=True for a local Ray runtime)")
    results = []
    for inp in steps:
        try:
            img, size = inp.read()
            if detector:
                found = _explain_detections(clf, img, call, target=target, detection=detection, box=box, seed=seed,
                                            where=inp.source or "image")
            else:
                found = [explain_scored(clf, score_image(clf, img, target), call, seed=seed)]
        except BlackboxCamError as e:
            where = inp.source or "image"
            raise BlackboxCamError(named(where, str(e))) from None
        for res in found:
            res.source, res.stem = inp.source, inp.stem
            res.image_size = tuple(int(v) for v in size)
        if detector:
            from .explainer.detection_maps import in_file_pixels
            in_file_pixels(found, size)
        results.append(found if detector else found[0])
    return results if many else results[0]


def _explain_detections(det, img: np.ndarray, call, *, target, detection, box, seed: int, where: str) -> list:
    """One image's detections explained from one query set (:mod:`blackbox_cam.explainer.detection_maps`)."""
    from .explainer.detection_maps import choose_targets, explain_detections, no_detection_message, score_detections

    scored = score_detections(det, img)
    chosen = choose_targets(det, scored, target=target, detection=detection, box=box)
    if chosen.count == 0:
        warnings.warn(f"{where}: {no_detection_message(det, scored, target)}", stacklevel=3)
        return []
    return explain_detections(det, scored, call, chosen, seed=seed)


class _Task:
    """An input as :func:`blackbox_cam.jobs.dataset.explain_items` takes it (no map cache here)."""

    skip = False

    def __init__(self, inp: _Input, i: int) -> None:
        self.inp = inp
        self.name = Path(inp.source).name if inp.source else f"image[{i}]"
        self.path = Path(inp.source) if inp.source else None
        self.read = inp.read


def _explain_on_ray(clf, call, inputs, many, target, seed, ray, workers, model_opts, progress):
    """``explain(..., ray=...)``: the images as Ray tasks through the shared executor, in order."""
    from .jobs.dataset import explain_items
    from .jobs.executors import make_executor

    executor = make_executor(clf, model_opts, ray, workers=workers)
    results = []
    bar = None
    if many and progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(inputs), desc=f"{call.spec.name} on Ray ({executor.workers} workers)", unit="image")
    try:
        tasks = [_Task(inp, i) for i, inp in enumerate(inputs)]
        for im in explain_items(clf, tasks, {call.spec.name: call}, target=target, seed=seed, cache=None,
                                executor=executor):
            if bar is not None:
                bar.update(1)
            err = im.error or im.errors.get(call.spec.name)
            if err is not None:
                where = im.item.inp.source or "image"
                raise BlackboxCamError(named(where, err))
            res = im.results[call.spec.name][0]
            res.source, res.stem = im.item.inp.source, im.item.inp.stem
            res.image_size = tuple(int(v) for v in im.size)
            results.append(res)
    finally:
        if bar is not None:
            bar.close()
        executor.close()
    return results if many else results[0]


def _explain_detector_on_ray(det, call, inputs, many, target, detection, box, seed, ray, workers, model_opts,
                             progress):
    """``explain(detector, ..., ray=...)``: each image a :func:`~blackbox_cam.jobs.explain.detections.detector_unit`
    (the unit of ``blackbox-cam explain --ray`` on a detector) on a Ray worker, in order; the same
    results, warnings and errors as a run without ``ray=``."""
    from .jobs.dataset import MapRequest
    from .jobs.executors import Failed, ImageSource, Ready, Work, make_executor
    from .jobs.explain.detections import detector_unit

    executor = make_executor(det, model_opts, ray, workers=workers)
    requests = (MapRequest.of(call),)

    def where(inp: _Input) -> str:
        return inp.source or "image"

    def raise_for(inp: _Input, err: str) -> None:
        raise BlackboxCamError(named(where(inp), err))

    def tasks():
        for i, inp in enumerate(inputs):
            try:
                img, size = inp.read()
            except BlackboxCamError as e:   # raised in turn, as without ray=
                yield inp, Ready(Failed(str(e)))
                continue
            name = inp.source or f"image[{i}]"
            src = (ImageSource.of(name, inp.source, remote=True) if inp.source and executor.remote
                   else ImageSource(name, image=img, size=size))   # a file travels as its bytes
            yield inp, Work(detector_unit, (src, requests, target, detection, box, seed, None), name)

    results = []
    bar = None
    if many and progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(inputs), desc=f"{call.spec.name} on Ray ({executor.workers} workers)", unit="image")
    try:
        for inp, value in executor.imap(tasks()):
            if bar is not None:
                bar.update(1)
            if isinstance(value, Failed):
                raise_for(inp, value.error)
            if "none" in value:
                warnings.warn(f"{where(inp)}: {value['none']}", stacklevel=3)
                results.append([])
                continue
            got = value["methods"][call.spec.name]
            if isinstance(got, Failed):
                raise_for(inp, got.error)
            found = got[0]
            for res in found:   # boxes already in the file's pixels (the unit's in_file_pixels)
                res.source, res.stem = inp.source, inp.stem
                res.image_size = tuple(int(v) for v in value["size"])
            results.append(found)
    finally:
        if bar is not None:
            bar.close()
        executor.close()
    return results if many else results[0]


def plot_methods(model: str | os.PathLike | Classifier, image: Any,
                 methods: str | Sequence[str] = ("decam", "rise", "gradcam"), *, target: str | int | None = None,
                 budget: int | None = None, seed: int = 0, axes=None, **options: Any) -> list:
    """Several methods side by side on one image, one shared target and colour bar.

    The image is scored once (the same target for every method); each method runs as in
    :func:`explain` (``budget`` and ``options`` go to the methods that take them). Draws the
    image and one overlay per method, captioned with the method, its queries and seconds, into
    ``axes`` (one per method, plus one for the image) or a new figure; returns the results.
    """
    from .pictures.display import add_colorbar
    from .explainer.pipeline import explain_scored, resolve_target, score_image
    from .methods import bind_all, parse_methods

    names = parse_methods(methods)
    model_opts, method_opts = _split(options)
    bind_all(names, budget, method_opts)
    clf = load_model(model, **model_opts)
    calls = bind_all(names, budget, method_opts, clf=clf)
    if target is not None and str(target).lower() != "top1":
        target = resolve_target(clf, target)
    inputs, many = _inputs(image)
    if many or len(inputs) != 1:
        raise BlackboxCamError("plot_methods draws one image; pass one file, PIL image or array")
    img, size = inputs[0].read()
    scored = score_image(clf, img, target)
    results = [explain_scored(clf, scored, calls[n], seed=seed) for n in names]
    for r in results:
        r.source, r.stem, r.image_size = inputs[0].source, inputs[0].stem, tuple(int(v) for v in size)
    if axes is None:
        import matplotlib.pyplot as plt

        h, w = img.shape[:2]
        cols = len(results) + 1
        fig, axes = plt.subplots(1, cols, figsize=(2.8 * cols + 0.8, 2.8 * h / w + 0.9), layout="constrained")
    axes = list(np.ravel(axes))
    if len(axes) != len(results) + 1:
        raise BlackboxCamError(f"plot_methods needs {len(results) + 1} axes (the image, then each method), "
                               f"got {len(axes)}")
    from .io.images import to_uint8

    axes[0].imshow(to_uint8(img))
    axes[0].set_title(f"{Path(inputs[0].source).name if inputs[0].source else 'image'}\n"
                      f"{results[0].label or results[0].target} ({results[0].score:.3f})", fontsize=9)
    for ax, r in zip(axes[1:], results):
        q = r.explanation.queries
        ax.imshow(np.asarray(r.overlay()))
        ax.set_title(f"{r.method}\n{q} {'query' if q == 1 else 'queries'}, {r.explanation.seconds:.1f} s", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    add_colorbar(axes[-1])
    return results


__all__ = ["MODEL_OPTIONS", "explain", "load_model", "plot_methods"]


def detect(model: str | os.PathLike | Any, image: Any, *, conf: float | None = None, iou: float | None = None,
           max_detections: int | None = None, progress: bool = True, **options: Any):
    """Detect objects in ``image`` with ``model``: an
    :class:`~blackbox_cam.explainer.detections.ImageDetections` (boxes and labels drawn when shown), or a
    list of them for a folder, a manifest or a list.

    ``model`` is an ``.onnx`` path (opened as a :class:`~blackbox_cam.model.detector.Detector`
    with ``options``) or a Detector; ``conf``/``iou``/``max_detections`` default to the
    detector's (Ultralytics' 0.25 / 0.45 / 300). Boxes are in the image file's pixels.
    """
    from .explainer.detections import detect_image
    from .model.detector import Detector, check_thresholds

    det = model if isinstance(model, Detector) else None
    if det is None:
        if not isinstance(model, (str, os.PathLike)):
            raise BlackboxCamError(f"model must be an .onnx path or a blackbox_cam.Detector, not {type(model).__name__}")
        det = Detector(model, **options)
    elif options:
        raise BlackboxCamError(f"{', '.join(sorted(options))}: model options load a model from its file; "
                               "the model is already loaded, so pass them to Detector(...) instead")
    check_thresholds(det.conf if conf is None else conf, det.iou if iou is None else iou,
                     det.max_detections if max_detections is None else max_detections)
    inputs, many = _inputs(image)
    if many and not inputs:
        raise BlackboxCamError(f"{image}: no images to detect in")
    steps: Iterable[_Input] = inputs
    if many and progress:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="IProgress not found")
            from tqdm.auto import tqdm

        steps = tqdm(inputs, desc="detect", unit="image")
    results = []
    for inp in steps:
        try:
            img, size = inp.read()
            results.append(detect_image(det, img, image_size=tuple(int(v) for v in size), conf=conf, iou=iou,
                                        max_detections=max_detections, source=inp.source, stem=inp.stem))
        except BlackboxCamError as e:
            where = inp.source or "image"
            raise BlackboxCamError(named(where, str(e))) from None
    return results if many else results[0]

