"""CAManim: the explanation animated through every layer (white-box) or through the search (black-box).

Kaczmarek et al., "CAManim: Animating end-to-end network activation maps", PLoS One 2024 (code:
``pytorch-grad-cam-anim``, a fork of pytorch-grad-cam), show the CAM of every layer of a CNN in
network order as a video and score every frame with ROAD, a curve over depth they call the
"yellow brick ROAD" (ybROAD), summarised by its maximum and mean. Their implementation needs
the torch model and runs it once per layer; here the gradient graph returns the CAMs of all
selected layers in one ONNX Runtime run (:func:`blackbox_cam.methods.gradcam.layer_cams`, the
CAM formula emitted into the graph), so a whole animation costs a few forward passes, from the
``.onnx`` file alone.

Normalisations (as CAManim's ``--norm``):

``layer``
    Each frame min-max scaled on its own: exactly the map ``explain -m METHOD --layer NAME``
    writes for that layer (pytorch-grad-cam's pipeline, :func:`blackbox_cam.methods.cams.upsample_cams`).
``global``
    One ``[lo, hi]`` over the raw (post-ReLU) CAMs of all selected layers, ``(cam - lo) / (hi -
    lo)``, so the ratios between layers' magnitudes stay visible. Computed from the raw maps,
    never from layer-scaled ones (the authors' ``both`` mode rescales already layer-scaled maps,
    which shows nothing but the layer normalisation again).

ybROAD: ROAD (Rong et al., ICML 2022, :mod:`blackbox_cam.metrics.road`) with noisy linear
imputation at 20/40/60/80 %, pytorch-grad-cam's ``ROADCombined`` convention ``mean over the
percentiles of (LeRF - MoRF) / 2``. With this symmetric set the removed fractions are the same
whichever way a percentile is read, so the number equals ``ROADCombined(percentiles=[20, 40, 60,
80])``. The unperturbed image is scored once for all frames, so ybROAD costs ``1 + 8 x frames``
model queries, batched across frames; the imputations (a sparse solve each) are the slow part.

Black-box (``decam``): one frame per differential-evolution generation from DE-CAM's
``trace=True`` contract (``Explanation.extra["trace"]``: ``generation``, ``queries``,
``best_fitness``, ``saliency`` so far and ``best_mask``); the last frame is the returned map.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ...methods import cams
from ...errors import BlackboxCamError
from ...io.images import resize_map
from ...metrics import road_images, road_result
from ...metrics.road import RoadResult
from ...pictures.display import Gif, Shows

#: ybROAD's removal fractions (CAManim: percentiles 20, 40, 60, 80).
YBROAD_FRACTIONS = (0.2, 0.4, 0.6, 0.8)
NORMS = ("layer", "global", "both")
#: ``--layers`` keywords: every 4-D tensor ``blackbox-cam layers`` lists, or one per block.
LAYER_KEYWORDS = ("all", "blocks")
#: the methods that animate a search instead of layers.
SEARCH_METHODS = ("decam",)
ATTENTION_METHODS = ("rollout", "attention-grad")  # frames: relevance through the first k blocks


@dataclass
class Frame:
    """One frame of an animation.

    Maps are kept at the model's input size; the image-size maps are made on first access
    (the bilinear resize ``explain`` applies), so computing frames costs no more than the
    gradient run and pictures or saved maps pay for the resize.

    Attributes
    ----------
    index : 1-based position in the animation.
    name : the layer's tensor name (white-box) or ``generation G`` (search).
    shape : the layer's shape without the batch axis, e.g. ``(16, 64, 64)``; None for a search.
    model_map : float32 map at the model's input size in [0, 1], scaled on its own (what ROAD
        scores).
    size : the image's ``(H, W)``.
    global_model_map : the map scaled by the animation's global range, model size; None for a search.
    raw : the layer's post-ReLU CAM at its own resolution ``(h, w)``; None for a search.
    model_mask : DE-CAM's best mask so far at the model's size; None for layers.
    info : search frames: ``generation``, ``queries``, ``best_fitness``.
    road : the frame's ROAD result once :func:`add_ybroad` has run.
    """

    index: int
    name: str
    shape: tuple[int, ...] | None
    model_map: np.ndarray
    size: tuple[int, int]
    global_model_map: np.ndarray | None = None
    raw: np.ndarray | None = None
    model_mask: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    road: RoadResult | None = None

    @cached_property
    def layer_map(self) -> np.ndarray:
        """float32 (H, W) at the image's size in [0, 1]: for a layer exactly what ``explain
        --layer NAME`` writes; for a search the map so far."""
        return _to_image(self.model_map, self.size)

    @cached_property
    def global_map(self) -> np.ndarray | None:
        """The globally scaled map at the image's size; None for a search."""
        return None if self.global_model_map is None else _to_image(self.global_model_map, self.size)

    @cached_property
    def mask(self) -> np.ndarray | None:
        """DE-CAM's best mask so far at the image's size; None for layers."""
        return None if self.model_mask is None else _to_image(self.model_mask, self.size)

    def shape_text(self) -> str:
        return "x".join(str(d) for d in self.shape) if self.shape else ""


@dataclass(repr=False)
class Animation(Shows):
    """Frames of one method on one image, and what they explain.

    Shows itself (:class:`~blackbox_cam.pictures.display.Shows`): its picture is the contact
    sheet of every frame (layer normalisation), as ``write_animation`` writes it; :meth:`gif`
    is the animation itself, which plays in a notebook.
    """

    method: str
    kind: str                      # "layers" or "search"
    image: np.ndarray              # H x W x 3 float RGB 0..255
    x: np.ndarray                  # the image in model space (C, h, w)
    target: int
    label: str
    score: float                   # the target's probability on the unmasked image
    frames: list[Frame]
    global_range: tuple[float, float] | None = None
    queries: int = 0               # model queries: the prediction, a search's, ybROAD's
    params: dict[str, Any] = field(default_factory=dict)

    def picture(self, norm: str = "layer"):
        """All frames on one page (``<stem>_<method>_<norm>_sheet.png``)."""
        from ...pictures.movie import contact_sheet

        return contact_sheet(self, norm)

    def gif(self, norm: str = "layer", fps: float = 5.0) -> Gif:
        """The animated GIF ``write_animation`` writes (a bare one plays in a notebook; ``.save(path)``)."""
        from ...pictures.movie import gif_bytes, pictures

        return Gif(gif_bytes(pictures(self, norm), fps))

    def describe(self) -> str:
        yb = self.ybroad
        road = f", ybROAD max {yb['max']:+.3f} at {yb['argmax']} ({yb['argmax_name']})" if yb else ""
        q = f"{self.queries} {'query' if self.queries == 1 else 'queries'}"
        return f"{self.method}: {self.label} ({self.score:.3f}), {len(self.frames)} frames, {q}{road}"

    def __repr__(self) -> str:
        return f"<Animation {self.describe()}>"

    @property
    def ybroad(self) -> dict[str, float | int | str] | None:
        """``max``, ``mean`` and where the maximum is (1-based ``argmax`` and its frame name),
        or None before :func:`add_ybroad`."""
        if not self.frames or any(f.road is None for f in self.frames):
            return None
        r = np.array([f.road.combined for f in self.frames])
        i = int(np.argmax(r))
        return {"max": float(r[i]), "mean": float(r.mean()), "argmax": i + 1, "argmax_name": self.frames[i].name}


# --------------------------------------------------------------------------- layers


def _four_d(layers: Sequence) -> list:
    return [l for l in layers if l.shape is not None and len(l.shape) == 4]


def _spatial(layers: Sequence) -> list:
    """4-D tensors with more than one pixel: a pooled ``1 x 1`` map's CAM is a constant (blank
    after layer scaling) and, being the class score itself, would swamp the global range."""
    return [l for l in _four_d(layers) if tuple(l.shape[2:]) != (1, 1)]


def select_layers(clf, layers: str | Sequence[str] | None = "all") -> list:
    """The ``LayerInfo`` of the tensors to animate, in the graph's (topological) order.

    ``"all"``/None: every 4-D tensor ``blackbox-cam layers`` lists except pooled ``1 x 1`` maps
    (see :func:`_spatial`); ``"blocks"``: the last 4-D tensor of every block
    (:func:`~blackbox_cam.methods.gradcam.block_outputs`); otherwise tensor names (a list, or one
    comma-separated string; any 4-D tensor, ``1 x 1`` included), each checked, with close names
    suggested for unknown ones, and put in graph order.
    """
    from ...methods.gradcam import block_outputs, layer_suggestion, list_layers, token_facts

    every = list_layers(clf)
    tokens = token_facts(clf)
    if tokens.grid is not None:  # issue 19: a transformer animates its token maps block by block
        return _token_layers(clf, every, tokens, layers)
    four = _four_d(every)
    if not four:
        raise BlackboxCamError(
            "the model has no 4-D feature map [N, C, H, W], so there are no layers to animate with a "
            "white-box method; animate the black-box search instead with -m decam")
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "all"):
        return _spatial(four) or four
    if isinstance(layers, str) and layers.strip().lower() == "blocks":
        keep = set(block_outputs(every))
        return [l for l in four if l.name in keep] or _spatial(four) or four
    names = [n.strip() for n in (layers.split(",") if isinstance(layers, str) else layers) if n.strip()]
    if not names:
        raise BlackboxCamError("--layers is empty; give all, blocks or tensor names "
                               "(`blackbox-cam layers MODEL` lists them)")
    by_name = {l.name: l for l in every}
    for n in names:
        if n not in by_name:
            raise BlackboxCamError(f"--layers: {n!r} is not a tensor of this model{layer_suggestion(n, [l.name for l in four])} "
                                   "(`blackbox-cam layers MODEL` lists them)")
        if by_name[n].shape is None or len(by_name[n].shape) != 4:
            raise BlackboxCamError(f"--layers: {n!r} has shape {list(by_name[n].shape or [])}, not a 4-D feature "
                                   "map [N, C, H, W]; CAMs need 4-D tensors (`blackbox-cam layers MODEL` lists them)")
    wanted = set(names)
    return [l for l in four if l.name in wanted]


def _token_layers(clf, every: Sequence, tokens, layers) -> list:
    """A transformer's layers to animate: ``all``/``blocks``: each block's output token map, up to
    the default layer (when the head reads the class token, later patch tokens have zero
    gradient); or named tensors, each a feature or token map (:func:`gradcam.layer_info`)."""
    from ...methods.gradcam import block_outputs, layer_info

    if layers is None or (isinstance(layers, str) and layers.strip().lower() in ("all", "blocks")):
        keep = set(block_outputs(every, tokens))
        return [l for l in every if l.name in keep]
    names = [n.strip() for n in (layers.split(",") if isinstance(layers, str) else layers) if n.strip()]
    if not names:
        raise BlackboxCamError("--layers is empty; give all, blocks or tensor names "
                               "(`blackbox-cam layers MODEL` lists them)")
    wanted = {layer_info(clf, n).name for n in names}
    return [l for l in every if l.name in wanted]


def _frame_shape(clf, l) -> tuple[int, ...]:
    """The layer's shape without the batch axis; a token map's as its grid and channels."""
    from ...methods.gradcam import token_facts

    grid = token_facts(clf).maps.get(l.name)
    if grid is not None:
        return (grid.h, grid.w) + ((int(l.shape[-1]),) if l.shape and l.shape[-1] else ())
    return tuple(int(d) for d in l.shape[1:])


def attention_frames(clf, image: np.ndarray, method: str, *, target: str | int | None = None) -> Animation:
    """CAManim frames of an attention method (``rollout``, ``attention-grad``): frame ``k`` is the
    relevance accumulated through the first ``k`` blocks, so the animation shows attention
    flowing from the patches into the class token. One query (the prediction) plus one run of
    the gradient graph."""
    from ...methods._attention import attentions, relevance_map
    from ...methods.attention_grad import relevance_matrix
    from ...methods.rollout import rollout_matrix

    q0 = clf.queries
    x, tgt, score = _predict(clf, image, target)
    pairs, facts = attentions(clf, x, tgt, None)
    size_model, size_image = tuple(clf.input_size), image.shape[:2]
    maps = []
    for k in range(1, len(pairs) + 1):
        R = rollout_matrix([A for A, _ in pairs[:k]]) if method == "rollout" else relevance_matrix(pairs[:k])
        maps.append(relevance_map(R, facts, size_model))
    raws = [np.maximum(raw, 0) for _, raw in maps]
    lo, hi = global_range(raws)
    frames = [Frame(k, f"blocks 1-{k}", (facts.grid.h, facts.grid.w), m, size_image,
                    global_model_map=global_scale(r, lo, hi, size_model), raw=r)
              for k, ((m, _), r) in enumerate(zip(maps, raws), 1)]
    return Animation(method, "layers", image, x, tgt, clf.label(tgt), score, frames, (lo, hi),
                     queries=clf.queries - q0, params={"blocks": len(frames)})


def _predict(clf, image: np.ndarray, target) -> tuple[np.ndarray, int, float]:
    """The image in model space, the resolved target and its probability (one query)."""
    from ...explainer.pipeline import score_image

    scored = score_image(clf, image, target)
    return scored.x, scored.target, float(scored.probs[scored.target])


def _to_image(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A model-size map at the image's size, the way ``explain_image`` resizes it."""
    return np.clip(resize_map(saliency, size), 0.0, 1.0).astype(np.float32)


def global_range(raw: Sequence[np.ndarray]) -> tuple[float, float]:
    """One ``(lo, hi)`` over the raw post-ReLU CAMs of all layers (CAManim's global norm)."""
    return float(min(float(r.min()) for r in raw)), float(max(float(r.max()) for r in raw))


def global_scale(raw: np.ndarray, lo: float, hi: float, size: tuple[int, int]) -> np.ndarray:
    """``(raw - lo) / (hi - lo)`` at the layer's resolution, resized to ``size = (H, W)`` with the
    same bilinear resize the layer pipeline uses (linear, so it commutes with the scaling)."""
    span = hi - lo
    scaled = (np.asarray(raw, np.float32) - np.float32(lo)) / np.float32(span) if span > 0 else \
        np.zeros(np.shape(raw), np.float32)
    return cams.resize_bilinear(scaled, size)


def layer_frames(clf, image: np.ndarray, method: str = "gradcam", *, layers: str | Sequence[str] | None = "all",
                 target: str | int | None = None) -> Animation:
    """CAManim frames of a white-box ``method`` for one ``H x W x 3`` RGB image (0..255).

    One gradient run returns the post-ReLU CAMs of every selected layer. Each frame's
    ``layer_map`` is that layer's map through pytorch-grad-cam's pipeline resized to the image
    (what ``explain --layer NAME`` writes); ``global_map`` divides the raw CAMs by one range
    over all layers. Costs one query (the prediction) plus the gradient run.
    """
    from ...methods import METHODS
    from ...methods.gradcam import layer_cams

    if method not in METHODS or not METHODS[method].whitebox:
        white = [n for n, s in METHODS.items() if s.whitebox]
        raise BlackboxCamError(f"{method!r} is not a white-box method; animate layers with one of "
                               f"{', '.join(white)}, or the search with -m decam")
    infos = select_layers(clf, layers)
    q0 = clf.queries
    x, tgt, score = _predict(clf, image, target)
    raw = layer_cams(clf, x[None], [tgt], method=method, layers=[l.name for l in infos], upsample=False)
    size_model, size_image = tuple(clf.input_size), image.shape[:2]
    lo, hi = global_range([raw[l.name] for l in infos])
    frames = []
    for i, l in enumerate(infos, 1):
        r = raw[l.name][0]
        model_map = cams.upsample_cams(raw[l.name], size_model)[0]
        frames.append(Frame(i, l.name, _frame_shape(clf, l), model_map, size_image,
                            global_model_map=global_scale(r, lo, hi, size_model), raw=r))
    return Animation(method, "layers", image, x, tgt, clf.label(tgt), score, frames, (lo, hi),
                     queries=clf.queries - q0, params={"layers": len(frames)})


# --------------------------------------------------------------------------- search


def search_frames(clf, image: np.ndarray, method: str = "decam", *, target: str | int | None = None,
                  budget: int | None = None, seed: int = 0, **options: Any) -> Animation:
    """One frame per DE-CAM generation: the map as the search has built it so far and the best
    mask, from ``trace=True``. The last frame's map is the map ``explain`` returns for the same
    seed and budget."""
    from ...explainer.pipeline import explain_image

    if method not in SEARCH_METHODS:
        raise BlackboxCamError(f"{method!r} has no search to animate; black-box animation supports "
                               f"{', '.join(SEARCH_METHODS)}")
    q0 = clf.queries
    res = explain_image(clf, image, method, target=target, budget=budget, seed=seed, trace=True, **options)
    trace = res.explanation.extra.get("trace") or []
    if not trace:
        raise BlackboxCamError(f"{method} returned no trace to animate")
    size_image = image.shape[:2]
    frames = []
    for i, t in enumerate(trace, 1):
        sal = np.asarray(t["saliency"], np.float32)
        frames.append(Frame(i, f"generation {int(t['generation'])}", None, sal, size_image,
                            model_mask=np.asarray(t["best_mask"], np.float32),
                            info={"generation": int(t["generation"]), "queries": int(t["queries"]),
                                  "best_fitness": float(t["best_fitness"])}))
    return Animation(method, "search", image, clf.prepare(image), res.target, clf.label(res.target), res.score,
                     frames, None, queries=clf.queries - q0, params=dict(res.explanation.params))


def animate(clf, image: np.ndarray, method: str = "gradcam", *, layers: str | Sequence[str] | None = "all",
            target: str | int | None = None, budget: int | None = None, seed: int = 0, road: bool = True,
            batch_size: int | None = None, **options: Any) -> Animation:
    """Frames of ``method`` on ``image`` (layers for white-box methods, generations for DE-CAM),
    with ybROAD when ``road``. The Python API behind ``blackbox-cam animate``."""
    if method in SEARCH_METHODS:
        anim = search_frames(clf, image, method, target=target, budget=budget, seed=seed, **options)
    elif method in ATTENTION_METHODS:
        anim = attention_frames(clf, image, method, target=target)
    else:
        anim = layer_frames(clf, image, method, layers=layers, target=target)
    if road:
        add_ybroad(clf, anim, seed=seed, batch_size=batch_size)
    return anim


# --------------------------------------------------------------------------- ybROAD


def add_ybroad(clf, anim: Animation, *, fractions: Sequence[float] = YBROAD_FRACTIONS, seed: int = 0,
               batch_size: int | None = None, on_frame: Callable[[int], None] | None = None) -> Animation:
    """ROAD of every frame's map (noisy linear imputation, ``fractions`` removed, MoRF and LeRF),
    stored in ``frame.road``; returns ``anim``.

    Queries: the unperturbed image once, then ``2 * len(fractions)`` imputed images per frame,
    scored in batches of ``batch_size`` (default: the classifier's) across frames. Each frame's
    result equals :func:`blackbox_cam.metrics.road` on its ``model_map`` with the same seed.
    ``on_frame(i)`` is called after each frame's imputations (progress).
    """
    fr = tuple(float(f) for f in fractions)
    step = int(batch_size or getattr(clf, "batch_size", None) or 32)
    q0 = clf.queries
    original = float(clf.probabilities(anim.x[None])[0, anim.target])
    per = 2 * len(fr)
    pending: list[tuple[Frame, np.ndarray]] = []

    def flush(final: bool) -> None:
        while pending and (final or sum(len(p[1]) for p in pending) >= step):
            stack = np.concatenate([p[1] for p in pending])
            scores = np.concatenate([clf.probabilities(stack[i:i + step])[:, anim.target]
                                     for i in range(0, len(stack), step)])
            for k, (frame, _) in enumerate(pending):
                frame.road = road_result(original, scores[k * per:(k + 1) * per], fr)
            pending.clear()

    for frame in anim.frames:
        pending.append((frame, road_images(anim.x, frame.model_map, fractions=fr, seed=seed)))
        if on_frame is not None:
            on_frame(frame.index)
        flush(False)
    flush(True)
    anim.queries += clf.queries - q0
    anim.params["ybroad_queries"] = clf.queries - q0
    return anim


# --------------------------------------------------------------------------- files


def norms_for(anim: Animation, norm: str) -> list[str]:
    """The normalisations to write: ``both`` is ``layer`` and ``global``; a search has only
    its own per-generation scaling (``layer``), since DE-CAM's trace holds normalised maps."""
    if norm not in NORMS:
        raise BlackboxCamError(f"--norm {norm!r}: use one of {', '.join(NORMS)}")
    if anim.kind == "search":
        return ["layer"]
    return ["layer", "global"] if norm == "both" else [norm]


def write_animation(anim: Animation, out_dir, stem: str, *, norm: str = "both", fps: float = 5.0,
                    fmt: str = "gif", save_maps: bool = False) -> dict[str, Any]:
    """Write an animation's files into ``out_dir`` (each atomically); returns ``kind -> path``.

    ``<stem>_<method>_<norm>.gif|mp4`` per normalisation (``_search`` for DE-CAM), a contact sheet
    ``<stem>_<method>_<norm>_sheet.png`` each, ``<stem>_<method>_ybroad.csv`` and ``.png`` when
    the frames have ROAD scores, and with ``save_maps`` ``<stem>_<method>_layers.npz`` (key =
    tensor name, or ``generation_G`` for a search; value = the frame's layer-normalised map at
    the image's size). The bytes are :func:`animation_files`'.
    """
    return write_files(animation_files(anim, stem, norm=norm, fps=fps, fmt=fmt, save_maps=save_maps), out_dir)


def write_files(files: dict[str, tuple[str, bytes]], out_dir) -> dict[str, Any]:
    """Write ``kind -> (file name, bytes)`` into ``out_dir`` (each atomically); ``kind -> path``."""
    from pathlib import Path

    from ...io.output import ensure_dir, write_bytes

    out = ensure_dir(Path(out_dir))
    written: dict[str, Any] = {}
    for kind, (name, data) in files.items():
        write_bytes(out / name, data)
        written[kind] = out / name
    return written


def animation_files(anim: Animation, stem: str, *, norm: str = "both", fps: float = 5.0, fmt: str = "gif",
                    save_maps: bool = False) -> dict[str, tuple[str, bytes]]:
    """The files of :func:`write_animation` as ``kind -> (file name, bytes)``, made where the
    animation was made (a Ray worker sends back bytes, the driver writes them)."""
    from ...pictures import movie
    from . import ybroad
    from ...io.output import png_bytes

    if fmt not in ("gif", "mp4"):
        raise BlackboxCamError(f"--format {fmt!r}: use gif or mp4")
    if fmt == "mp4" and not movie.have_mp4():
        raise BlackboxCamError(movie.MP4_HINT)
    base = f"{stem}_{anim.method.replace('+', 'p')}"
    files: dict[str, tuple[str, bytes]] = {}
    for n in norms_for(anim, norm):
        tag = "search" if anim.kind == "search" else n
        pics = movie.pictures(anim, n)
        files[f"{tag}_{fmt}"] = (f"{base}_{tag}.{fmt}",
                                 movie.gif_bytes(pics, fps) if fmt == "gif" else movie.mp4_bytes(pics, fps))
        files[f"{tag}_sheet"] = (f"{base}_{tag}_sheet.png", png_bytes(movie.contact_sheet(anim, n), compress_level=3))
    if anim.ybroad is not None:
        files["ybroad_csv"] = (f"{base}_ybroad.csv", ybroad.ybroad_csv(anim).encode("utf-8"))
        files["ybroad_png"] = (f"{base}_ybroad.png", ybroad.ybroad_plot(anim))
    if save_maps:
        import io

        key = (lambda f: f.name) if anim.kind == "layers" else (lambda f: f"generation_{f.info['generation']}")
        buf = io.BytesIO()
        np.savez_compressed(buf, **{key(f): f.layer_map for f in anim.frames})
        files["maps"] = (f"{base}_layers.npz", buf.getvalue())
    return files


def animate_unit(clf, source: Any, methods: Sequence[str], stem: str, run: dict[str, Any],
                 per: dict[str, dict[str, Any]], files: dict[str, Any]) -> list[Any]:
    """One image's animations, the same in-process and on a Ray worker: per method
    ``(summary, files)`` (:func:`animation_files`) or :class:`~blackbox_cam.jobs.executors.Failed`.
    ``run``: ``layers``, ``target``, ``budget``, ``seed``, ``road``; ``per``: each method's options;
    ``files``: ``norm``, ``fps``, ``fmt``, ``save_maps``."""
    from ..executors import failed
    try:
        image = source.load()
    except Exception as e:
        return [failed(source.name, e)] * len(methods)
    out: list[Any] = []
    for name in methods:
        try:
            anim = animate(clf, image, name, **run, **per.get(name, {}))
            summary = {"label": anim.label, "score": float(anim.score), "frames": len(anim.frames),
                       "queries": int(anim.queries), "ybroad": anim.ybroad}
            out.append((summary, animation_files(anim, stem, **files)))
        except Exception as e:
            out.append(failed(f"{source.name}: {name}", e))
    return out
