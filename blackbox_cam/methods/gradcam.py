"""The white-box Grad-CAM family on an ONNX classifier: gradients from the graph itself.

:mod:`blackbox_cam.gradients` turns the classifier into a *gradient model* (inputs: the image
and a ``seed`` row per image; outputs: each chosen layer's activation and the gradient of
``sum(seed * scores)`` with respect to it); :mod:`blackbox_cam.methods.cams` turns those into maps
with pytorch-grad-cam's conventions. With a one-hot seed the gradient is that of the target's
entry in the model's output (pytorch-grad-cam's ``ClassifierOutputTarget``): the raw score,
or the probability for a model whose output is a Softmax; so maps match pytorch-grad-cam on
the model the ONNX file was exported from.

Registered methods: ``gradcam``, ``gradcam++``, ``hirescam``, ``xgradcam``, ``layercam``;
option ``layer`` (a tensor name from ``blackbox-cam layers``, or ``auto`` for the last 4-D
feature map before global pooling). White-box methods take no budget: they read the graph
instead of querying the black box. ``Explanation.queries`` is 1, the unmasked prediction that
scores the target (:meth:`blackbox_cam.methods.base.Call.run`); the gradient run is a second
graph, not a query of the black box, and is not counted.

Gradient models and their sessions are built once per classifier and layer set and cached.
:func:`layer_cams` computes maps for many layers in one run, the CAM formula emitted into the
graph (:func:`blackbox_cam.methods.cams.add_cam_outputs`) so the run returns ``[N, h, w]`` per layer
instead of full activations and gradients.
"""
from __future__ import annotations

import difflib
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _detgrad, cams
from ..model.backends import BackendError, Session, compile_model, log, run_batched
from ..errors import BlackboxCamError
from ..model.signature import read_model, value_dims
from .base import MethodOutput, register
from .options import Option

_STATE: weakref.WeakKeyDictionary[Any, dict] = weakref.WeakKeyDictionary()


# --------------------------------------------------------------------------- layers


def _gradients():
    from .. import gradients

    return gradients


def _state(clf, tokens: str | None = None) -> dict:
    """Cached per classifier: the prepared model, its layers and gradient runs; with ``tokens``
    (``--tokens H,W[,EXTRA]``, issue 19) the layers and token facts read with that grid."""
    st = _STATE.get(clf)
    if st is None:
        g = _gradients()
        prepared = g.prepare_model(clf.model, signature=clf.signature)
        st = {"model": prepared, "layers": g.candidate_layers(prepared, layout=clf.layout), "runs": {},
              "tokens": {}}
        _STATE[clf] = st
    return _with_tokens(st, tokens)


# -- issue 19 hook: token maps (blackbox_cam/gradients/_tokens.py) ----------------------------


def _with_tokens(st: dict, tokens: str | None) -> dict:
    """``st`` with ``st["facts"]``, the token facts for ``tokens`` (auto: read from the graph),
    and ``st["layers"]`` marked with them (roles and default)."""
    g = _gradients()
    key = None if tokens is None or str(tokens).lower() == "auto" else str(tokens)
    if key not in st["tokens"]:  # one view per grid, kept, so flags set on it (said_engine) stay set
        facts = g.token_facts(st["model"], g.parse_tokens(key))
        layers = st["layers"] if key is None else g.mark_tokens(st["layers"], facts)
        st["tokens"][key] = {**st, "facts": facts, "layers": layers, "tokens_key": key}
    return st["tokens"][key]


def token_facts(clf_or_model, tokens: str | None = None):
    """The :class:`~blackbox_cam.gradients.TokenFacts` of a classifier, model or path."""
    if hasattr(clf_or_model, "model") and hasattr(clf_or_model, "input_name"):
        return _state(clf_or_model, tokens)["facts"]
    g = _gradients()
    return g.token_facts(g.prepare_model(clf_or_model), g.parse_tokens(tokens))


def layer_info(clf, layer: str | None = "auto", tokens: str | None = None):
    """The ``LayerInfo`` for ``layer``, or a one-line :class:`BlackboxCamError`."""
    st = _state(clf, tokens)
    return resolve_layer(st["layers"], layer, st["model"], st["facts"])


# -- end of the issue 19 hook ------------------------------------------------------------------


def list_layers(clf_or_model) -> list:
    """The layers Grad-CAM can explain (``LayerInfo``; ``is_default`` marks what ``auto`` uses).

    Accepts a :class:`~blackbox_cam.model.runtime.Classifier`, an ``onnx.ModelProto`` or a path.
    """
    if hasattr(clf_or_model, "model") and hasattr(clf_or_model, "input_name"):
        return list(_state(clf_or_model)["layers"])
    g = _gradients()
    model = g.prepare_model(clf_or_model)  # loads a path once; read_model needs the proto
    try:  # the input's layout and size, so that symbolic heights and widths become known
        sig = read_model(model)
    except BlackboxCamError:
        return list(g.candidate_layers(model))
    return list(g.candidate_layers(g.prepare_model(model, signature=sig), layout=sig.layout))


def resolve_layer(layers: Sequence, name: str | None, model=None, tokens=None):
    """The ``LayerInfo`` called ``name`` (``auto``/None: the default); a clear error otherwise.

    ``tokens`` (:class:`~blackbox_cam.gradients.TokenFacts`): a transformer's token maps are
    layers too, and its attention matrices and internals are refused (issue 19)."""
    maps = [l for l in layers if l.role in ("map", "tokens") and not l.plumbing]
    if not maps:
        raise BlackboxCamError("the model has no feature map to explain with Grad-CAM (no [N, C, H, W] or "
                               "[N, H, W, C] tensor before the classifier head)")
    if name is None or str(name).lower() == "auto":
        default = [l for l in layers if l.is_default]
        if not default:
            last = ", ".join(repr(l.name) for l in maps[-3:])
            raise BlackboxCamError("no global pooling or flatten head reads a feature map in this model, so there "
                                   f"is no default layer; pick one with --layer, e.g. {last} (the last maps; "
                                   "`blackbox-cam layers MODEL` lists them)")
        return default[-1]
    found = next((l for l in layers if l.name == name), None)
    shape = (list(found.shape) if found is not None and found.shape is not None else
             value_dims(model.graph, name) if model is not None else None)
    if tokens is not None and tokens.grid is not None and (found is not None or shape is not None):
        if name in tokens.maps and found is not None:
            return found
        _gradients()._tokens.check_token_layer(tokens, name, shape)
    if found is not None and found.layout is not None:
        return found
    if shape is not None and len(shape) != 4:
        default = [l.name for l in layers if l.is_default] or [maps[-1].name]
        raise BlackboxCamError(
            f"--layer {name!r} is a {len(shape)}-D tensor {shape}; Grad-CAM needs a 4-D feature map "
            f"[N, C, H, W] or [N, H, W, C] (e.g. {default[0]!r}); see `blackbox-cam layers MODEL`")
    if found is not None:
        raise BlackboxCamError(
            f"--layer {name!r} {shape}: the graph does not say which of its axes are channels, height and "
            "width (they pass through an op that merges or splits axes); pick a map from `blackbox-cam layers MODEL`")
    hint = layer_suggestion(name, [l.name for l in maps])
    raise BlackboxCamError(f"--layer {name!r} is not a layer of this model{hint} "
                           "(`blackbox-cam layers MODEL` lists them, or use --layer auto)")


def layer_suggestion(name: str, names: Sequence[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` from the up to 3 closest tensor ``names``, or ``""``.

    Tensor names are long paths that differ in one component, so when no spelling is close
    the names containing the last path part of ``name`` are offered.
    """
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    if not close:
        tail = name.strip("/").split("/")[-1].lower()
        close = [n for n in names if tail and tail in n.lower()][:3]
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


# --------------------------------------------------------------------------- runs


def _gradient_run(clf, layer_names: tuple[str, ...], methods: tuple[str, ...] | None = None,
                  tokens: str | None = None) -> dict:
    """Cached: the gradient model for ``layer_names`` and its session. With ``methods`` the
    CAM formulas are emitted into the graph and the session returns ``[N, h, w]`` maps
    (one per layer and method, in that order) instead of activations and gradients."""
    st = _state(clf, tokens)
    key = (layer_names, methods, st["tokens_key"])
    run = st["runs"].get(key)
    if run is not None:
        return run
    infos = [resolve_layer(st["layers"], n, st["model"], st["facts"]) for n in layer_names]
    # pytorch-grad-cam differentiates what the model returns: the probability for a model whose
    # output is a Softmax (the signature's rule), else the raw score; a detector's output as it is
    # (the seed picks one candidate's class probability, _detgrad)
    head = _detgrad.layout_of(clf)
    if head is None:
        gm = _gradients().build_gradient_model(st["model"], [i.name for i in infos], signature=clf.signature)
    else:  # the detector's score tensor (its output, or a score head in the graph)
        if "score_model" not in st:
            st["score_model"] = _detgrad.score_model(st["model"], head)
        scored, score = st["score_model"]
        gm = _gradients().build_gradient_model(scored, [i.name for i in infos], output=score, use_probability=False)
    pairs = {i.name: (gm.activation_names[i.name], gm.gradient_names[i.name]) for i in infos}
    model, emitted = gm.model, []
    # issue 19: token maps [N, extra + h*w, C] are reshaped to [N, h, w, C] (NHWC) in the graph
    grids = {i.name: st["facts"].maps[i.name] for i in infos if i.name in st["facts"].maps}
    model, pairs = _gradients()._tokens.add_token_reshape(model, pairs, grids)
    layouts = ["NHWC" if i.name in grids else i.layout for i in infos]
    if methods is None:
        outputs = [t for i in infos for t in pairs[i.name]]
    else:
        model, emitted = cams.add_cam_outputs(model, pairs, methods,
                                              layout={i.name: lay for i, lay in zip(infos, layouts)})
        outputs = [e.output for e in emitted]
    session = _compile_gradient_graph(clf, model)
    run = {"infos": infos, "layouts": layouts, "session": session, "model": model, "seed": gm.seed_name,
           "outputs": outputs, "emitted": emitted, "seed_shape": gm.seed_shape}
    st["runs"][key] = run
    return run


def _run(clf, run: dict, x: np.ndarray, targets: Sequence[int], seed: np.ndarray | None = None) -> list[np.ndarray]:
    """Run the gradient model on a model-space batch, ``clf.batch_size`` images per call (a fixed
    batch padded by :func:`~blackbox_cam.model.backends.run_batched`). ``seed``: the one-hot
    seeds when the caller made them (a detector's, :func:`blackbox_cam.methods._detgrad.seeds`)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[None]
    fixed = run["session"].input(clf.input_name).fixed_batch
    step = fixed or int(getattr(clf, "batch_size", None) or len(x))
    if seed is not None:
        if len(seed) != len(x):
            raise BlackboxCamError(f"{len(seed)} seeds for {len(x)} images")
        feeds = {clf.input_name: clf.to_feed(x), run["seed"]: seed}
        return run_batched(run["session"], feeds, run["outputs"], step, fixed=fixed is not None)
    targets = np.asarray(targets, np.int64).reshape(-1)
    if len(targets) != len(x):
        raise BlackboxCamError(f"{len(targets)} targets for {len(x)} images")
    if np.any(targets < 0) or np.any(targets >= clf.num_classes):
        raise BlackboxCamError(f"targets {targets.tolist()} out of range 0..{clf.num_classes - 1}")
    if getattr(clf, "binary", False):  # one score: +score for class 1, -score for class 0, as
        # pytorch-grad-cam's BinaryClassifierOutputTarget; an [N] output takes an [N] seed
        seed = np.where(targets == 1, 1.0, -1.0).astype(np.float32)[:, None]
    else:
        seed = np.zeros((len(targets), clf.num_classes), np.float32)
        seed[np.arange(len(targets)), targets] = 1
    rank = len(clf.signature.output_dims)  # the seed has the output's shape: [N], [N, C] or [N, C, 1, 1]
    seed = seed[:, 0] if rank == 1 else seed.reshape(seed.shape + (1,) * max(0, rank - 2))
    feeds = {clf.input_name: clf.to_feed(x), run["seed"]: seed}
    return run_batched(run["session"], feeds, run["outputs"], step, fixed=fixed is not None)


#: Why the gradient graph always runs on ONNX Runtime (said once per classifier on another backend).
GRADIENT_ENGINE_NOTE = ("white-box: the gradient graph runs on onnxruntime, not {backend}: OpenVINO's gradients were up "
                        "to 0.41 off pytorch-grad-cam on the conformance zoo (RegNet), ONNX Runtime's within 1e-5")


def _compile_gradient_graph(clf, model) -> Session:
    """The gradient graph on ONNX Runtime, on the classifier's device when that is ONNX Runtime's.

    Every white-box number is checked against pytorch-grad-cam through ONNX Runtime; OpenVINO's
    CPU plugin, even at f32 precision, gave RegNet maps 0.41 off at early layers (and 2e-4 to
    2.4e-3 on a Keras VGG16), so the gradients never run there. The forward queries of the
    black-box methods stay on the chosen backend.
    """
    session = clf.session
    device = session.device if session.name == "onnxruntime" else "cpu"
    if session.name != "onnxruntime":
        st = _state(clf)
        if not st.get("said_engine"):
            log.warning(GRADIENT_ENGINE_NOTE.format(backend=session.name))
            st["said_engine"] = True
    try:
        return compile_model(model, "onnxruntime", device, threads=session.threads)
    except BackendError as e:
        raise BackendError(f"{clf.path}: the gradient graph does not load ({e})") from None


def compute_cams(clf, x: np.ndarray, targets: Sequence[int], *, method: str = "gradcam",
                 layer: str | None = "auto", tokens: str | None = None) -> np.ndarray:
    """``method``'s maps for a model-space batch ``x (N, 3, H, W)``: float32 ``[N, H, W]`` in
    [0, 1] at the model's input size, equal to pytorch-grad-cam's ``grayscale_cam`` (at a token
    layer: with the ``reshape_transform`` that drops the extra tokens and makes ``h x w``)."""
    cams.check_method(method)
    info = layer_info(clf, layer, tokens)
    run = _gradient_run(clf, (info.name,), None, tokens)
    A, G = _run(clf, run, x, targets)
    return cams.cam_maps(method, A, G, tuple(clf.input_size), layout=run["layouts"][0])


# -- issue 27: one detection of a detector (blackbox_cam/methods/_detgrad.py) ------------------


def detector_levels(model) -> tuple:
    """The levels of a detector's head (:class:`~blackbox_cam.gradients.DetectorLevel`, read once
    from the graph), ``()`` for a classifier or a head without levels."""
    st = _state(model)
    if "levels" not in st:
        lay = _detgrad.layout_of(model)
        axis = None if lay is None else _detgrad.CANDIDATE_AXIS.get(lay.kind)
        st["levels"] = () if axis is None else _gradients().detector_levels(
            st["model"], lay.outputs[0], axis, tuple(model.input_size), st["layers"])
    return st["levels"]


def head_levels(clf_or_model) -> tuple:
    """``(detector layout, levels)`` of a detector, model or path (``(None, ())`` for a classifier):
    what ``blackbox-cam layers`` says about where a detector's candidates come from."""
    if hasattr(clf_or_model, "model") and hasattr(clf_or_model, "input_name"):
        return _detgrad.layout_of(clf_or_model), detector_levels(clf_or_model)
    g = _gradients()
    model = g.prepare_model(clf_or_model)
    try:
        sig = read_model(model)
    except BlackboxCamError:
        return None, ()
    lay = getattr(sig, "detector", None)
    axis = None if lay is None else _detgrad.CANDIDATE_AXIS.get(lay.kind)
    if axis is None:
        return lay, ()
    model = g.prepare_model(model, signature=sig)
    return lay, g.detector_levels(model, lay.outputs[0], axis, tuple(sig.input_size),
                                  g.candidate_layers(model, layout=sig.layout))


def detection_layer(model, candidate: int, layer: str | None = "auto"):
    """``(LayerInfo, level)`` for a detection: ``auto`` is the neck map of the candidate's level
    (the map the head's branches for that level start from); a named layer is any map."""
    st = _state(model)
    level = _gradients().level_of(detector_levels(model), candidate)
    if layer is not None and str(layer).lower() != "auto":
        return resolve_layer(st["layers"], layer, st["model"], st["facts"]), level
    if level is None or level.neck is None:
        what = ("no level of the head holds it" if level is None else
                f"its level {level.name} has no single map that all of its head branches read")
        raise BlackboxCamError(f"--layer auto: candidate {candidate}: {what}; pick a feature map with --layer "
                               "(`blackbox-cam layers MODEL` lists them)")
    return resolve_layer(st["layers"], level.neck, st["model"], st["facts"]), level


def detection_cams(model, x: np.ndarray, targets: Sequence, *, method: str = "gradcam",
                   layer: str | None = "auto") -> np.ndarray:
    """``method``'s map per detection for a model-space batch ``x (N, 3, H, W)``, one target per
    image (:class:`~blackbox_cam.methods._detgrad.CandidateTarget` or a detection target): float32
    ``[N, H, W]`` in [0, 1], equal to pytorch-grad-cam's ``grayscale_cam`` with a target
    ``output[4 + class, candidate]`` at the same layer. Images whose candidates come from
    different levels run once per level (``auto`` takes each candidate's neck map)."""
    cams.check_method(method)
    x = np.asarray(x, np.float32)
    targets = [_detgrad.candidate_target(model, x[i], t) for i, t in enumerate(targets)]
    if len(targets) != len(x):
        raise BlackboxCamError(f"{len(targets)} targets for {len(x)} images")
    out = np.zeros((len(x),) + tuple(model.input_size), np.float32)
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(detection_layer(model, t.candidate, layer)[0].name, []).append(i)
    for name, idx in groups.items():
        run = _gradient_run(model, (name,))
        seed = _detgrad.seeds(model, run["seed_shape"], [targets[i] for i in idx])
        A, G = _run(model, run, x[idx], [], seed=seed)
        out[idx] = cams.cam_maps(method, A, G, tuple(model.input_size), layout=run["layouts"][0])
    return out


def _explain_detection(method: str, model, x: np.ndarray, target, layer: str) -> MethodOutput:
    t = _detgrad.candidate_target(model, x, target)
    info, level = detection_layer(model, t.candidate, layer)
    run = _gradient_run(model, (info.name,))
    A, G = _run(model, run, x[None], [], seed=_detgrad.seeds(model, run["seed_shape"], [t]))
    lay = run["layouts"][0]
    saliency = cams.cam_maps(method, A, G, tuple(model.input_size), layout=lay)[0]
    params = {"layer": info.name, "layer_shape": list(info.shape or []), "candidate": t.candidate, "class": t.cls,
              "differentiated": _detgrad.differentiated(_detgrad.layout_of(model)),
              "gradients": run["session"].describe()}
    if level is not None:
        params.update(level=level.name, cell=list(level.cell(t.candidate)))
    return MethodOutput(saliency, params, {"cam": cams.cam_image(method, A, G, layout=lay)[0]})


# -- end of the issue 27 hook -------------------------------------------------------------------


def block_outputs(layers: Sequence, tokens=None) -> list[str]:
    """The last feature map (or token map) of every block, in graph order: what CAManim animates.

    A block is a top-level module (``/layer1/...``), or an item of a top-level container
    (``/_blocks/3/...``, ``/features/3/...``), read from each layer's exporter scope. Pooled
    ``1 x 1`` maps are left out, and in a transformer whose head reads the class token
    (``tokens``: :class:`~blackbox_cam.gradients.TokenFacts`) the token maps after the default,
    whose patch tokens have zero gradient.
    """
    last: dict[str, str] = {}
    for l in layers:
        if l.role in ("map", "tokens") and not l.plumbing:
            parts = (l.scope or l.name).strip("/").split("/")
            key = "/".join(parts[:2]) if len(parts) > 1 and parts[1].isdigit() else parts[0]
            last.pop(key, None)
            last[key] = l.name
        if tokens is not None and l.is_default and tokens.head_reads == "extra tokens":
            break
    return list(last.values())


def layer_cams(clf, x: np.ndarray, targets: Sequence[int], *, method: str = "gradcam",
               layers: Sequence[str] | None = None, upsample: bool = True,
               tokens: str | None = None) -> dict[str, np.ndarray]:
    """Maps for many layers from one run (CAManim): ``layer -> [N, H, W]`` (``upsample``) or
    the ReLU'd maps ``[N, h, w]`` at each layer's own resolution. ``layers=None``: every block
    output (:func:`block_outputs`). The CAM formula runs inside the graph."""
    cams.check_method(method)
    st = _state(clf, tokens)
    names = tuple(block_outputs(st["layers"], st["facts"]) if layers is None else layers)
    run = _gradient_run(clf, names, (method,), tokens)
    outs = _run(clf, run, x, targets)
    if not upsample:
        return {e.layer: o for e, o in zip(run["emitted"], outs)}
    return {e.layer: cams.upsample_cams(o, tuple(clf.input_size)) for e, o in zip(run["emitted"], outs)}


# --------------------------------------------------------------------------- registry


def differentiated(clf) -> str:
    """Which score the gradient is taken of, by the one rule (what the model returns, as
    pytorch-grad-cam on the same model): ``"probability"`` when the graph ends in a Softmax
    (:attr:`ModelSignature.softmax`), else ``"raw output"`` (logits, or a binary head's score)."""
    return "probability" if clf.signature.softmax else "raw output"


LAYER_OPTION = Option("layer", str, "auto", "Tensor name to explain at, or auto: the last feature map before "
                      "global pooling, or a transformer's token map (`blackbox-cam layers MODEL` lists them).")
#: issue 19: the patch grid of a transformer whose graph does not show it
TOKENS_OPTION = Option("tokens", str, "auto", "Patch grid of a transformer's token maps as H,W or H,W,EXTRA "
                       "(EXTRA tokens before the grid, e.g. 14,14,1 for a class token), or auto: read from "
                       "the graph (the patch-embedding Conv and the Concat that adds class tokens).")


def _make(method: str):
    spec = cams.CAM_METHODS[method]

    def explain(clf, x: np.ndarray, target: int, *, budget: None, seed: int, score: float,
                layer: str, tokens: str = "auto") -> MethodOutput:
        if _detgrad.is_detection(target):  # issue 27: one detection's candidate and class
            return _explain_detection(method, clf, x, target, layer)
        info = layer_info(clf, layer, tokens)
        run = _gradient_run(clf, (info.name,), None, tokens)
        A, G = _run(clf, run, x[None], [target])
        lay = run["layouts"][0]
        saliency = cams.cam_maps(method, A, G, tuple(clf.input_size), layout=lay)[0]
        grid = token_facts(clf, tokens).maps.get(info.name)
        return MethodOutput(saliency, {"layer": info.name, "layer_shape": list(info.shape or []),
                                       **({"token_grid": grid.label()} if grid else {}),
                                       "differentiated": differentiated(clf),
                                       "gradients": run["session"].describe()},
                            {"cam": cams.cam_image(method, A, G, layout=lay)[0]})

    explain.__name__ = f"explain_{method.replace('+', 'p').replace('-', '_')}"
    explain.__doc__ = (f"{spec.summary}\n\nWhite-box: gradients from the ONNX graph at ``layer`` "
                       "(``auto``: the last feature map before global pooling). ``budget`` does not "
                       "apply and ``seed`` is unused; the gradient run is not a query of the black box.")
    return explain


def check_layer(clf, options) -> None:
    """``--layer`` against the model, once, before any image: not a tensor, not a feature map,
    or no default for ``auto`` is one line for the whole run (exit 2 at the CLI). A detector's
    ``auto`` needs the levels of its head (the neck map of each candidate's level)."""
    if _detgrad.layout_of(clf) is not None:
        _detgrad.check_layout(clf, "the Grad-CAM family")
        layer = options["layer"]
        if layer is None or str(layer).lower() == "auto":
            levels = detector_levels(clf)
            if not levels or any(l.neck is None for l in levels):
                raise BlackboxCamError("--layer auto: the levels of this detector's head (the maps its candidates "
                                       "come from) are not plain in the graph; pick a feature map with --layer "
                                       "(`blackbox-cam layers MODEL` lists them)")
        else:
            st = _state(clf)
            resolve_layer(st["layers"], layer, st["model"], st["facts"])
        return
    layer_info(clf, options["layer"], options.get("tokens", "auto"))


for _name in ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"):
    register(_name, whitebox=True, summary=cams.CAM_METHODS[_name].summary.rstrip("."), kinds=("class", "detection"),
             options=(LAYER_OPTION, TOKENS_OPTION), check=check_layer)(_make(_name))
del _name
