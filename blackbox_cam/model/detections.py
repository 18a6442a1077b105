"""Object-detector outputs: the one place that knows the layouts, and their decoding.

A detector's ONNX file says what it is through its output shapes, output names and
``metadata_props``; :func:`read_layout` turns those into a frozen :class:`DetectorLayout`, and
:func:`decode` turns the raw outputs of a batch into :class:`Candidates` (every box the head
proposes, before thresholds and NMS) in the one convention every consumer uses:

* ``boxes`` ``[N, A, 4]`` as ``x0, y0, x1, y1`` in **model-input pixels**;
* ``probs`` ``[N, A, C]`` class probabilities (per-class sigmoid for Ultralytics, softmax
  without the no-object slot for DETR, the class probability for YOLOv5 with objectness
  separate);
* ``objectness`` ``[N, A]`` (1.0 where the head has none), so a box's score for class ``c``
  is ``probs[..., c] * objectness`` (Redmon et al. 2016, YOLO; Ultralytics' ``conf``).

For exports with NMS inside the graph the candidates are the ``K`` reported detections, with a
one-hot class vector and the score as objectness (xaitk-saliency's convention for detectors
that report one score per box); :attr:`DetectorLayout.nms_inside` says so.

The layouts (``kind``):

============== ======================================================= ================================
kind           outputs                                                  decoding
============== ======================================================= ================================
ultralytics    ``[B, 4+C, A]`` (YOLOv8/v9/v11, Ultralytics ``Detect``)  cx, cy, w, h px; sigmoid probs
yolov5         ``[B, A, 5+C]`` (YOLOv5/v7, 3 anchors a cell)            cx, cy, w, h px; obj; probs
yolox          ``[B, A, 5+C]`` raw grid (1 a cell, no ``Exp`` node)     ``(xy + grid) * s``, ``exp(wh) * s``
nms-6          ``[B, K, 6]``: x0, y0, x1, y1, score, class              NMS inside (Ultralytics nms/end2end)
nms-7          ``[K, 7]``: batch, x0, y0, x1, y1, class, score          NMS inside (YOLOv7 end2end)
trt            num_dets, det_boxes, det_scores, det_classes             NMS inside (EfficientNMS_TRT)
torchvision    boxes ``[K, 4]``, labels ``[K]``, scores ``[K]``         NMS inside, one image a run
detr           logits ``[B, Q, C(+1)]``, boxes ``[B, Q, 4]`` normalised  softmax minus no-object, or sigmoid
rtdetr         ``[B, Q, 4+C]`` normalised (Ultralytics RT-DETR)         sigmoid probs, no NMS
============== ======================================================= ================================

The sidecar key ``"detector"`` declares a layout the graph does not make plain; its keys are
those of :data:`SIDECAR_KEYS` (see :func:`read_layout`).
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

from ..errors import BlackboxCamError
from .graph import dims

KINDS = ("ultralytics", "yolov5", "yolox", "nms-6", "nms-7", "trt", "torchvision", "detr", "rtdetr")
#: Kinds whose graph already ran NMS (the candidates are its K detections).
NMS_INSIDE = ("nms-6", "nms-7", "trt", "torchvision")
#: Kinds whose detections need no NMS at all (set prediction: DETR, RT-DETR).
NMS_FREE = ("detr", "rtdetr")
BOX_FORMATS = ("cxcywh", "xyxy", "cxcywh-norm", "xyxy-norm")
SCORE_RULES = ("prob", "sigmoid", "softmax-noobj", "softmax")
#: Keys of the sidecar's ``"detector": {...}`` object.
SIDECAR_KEYS = {
    "kind": f"one of {', '.join(KINDS)}",
    "outputs": "output names in the order the kind reads them (e.g. [\"logits\", \"pred_boxes\"])",
    "classes": "number of classes (needed for NMS-inside exports without metadata names or labels)",
    "box_format": f"one of {', '.join(BOX_FORMATS)} (default: the kind's)",
    "scores": f"one of {', '.join(SCORE_RULES)}: how the class output becomes probabilities (default: the kind's)",
    "strides": "YOLOX grid strides, default [8, 16, 32]",
}
#: ``outputs`` may also name tensors inside the graph: the pre-NMS head of an NMS-inside export
#: is then read (and its candidates explained) instead of the K reported detections.
#: Ultralytics tasks that are not box detection, refused by name.
OTHER_TASKS = {"segment": "an instance-segmentation head (boxes + mask coefficients)",
               "pose": "a pose head (boxes + keypoints)", "obb": "an oriented-box head (rotated boxes)",
               "semantic": "a semantic-segmentation head", "depth": "a depth head"}


@dataclass(frozen=True)
class DetectorLayout:
    """How a detector's outputs read, found once by :func:`read_layout`.

    Attributes
    ----------
    kind : one of :data:`KINDS`.
    outputs : the output names the decoder reads, in its order.
    num_classes : C, when the graph, metadata or sidecar fixes it (else learnt from a probe run).
    nms_inside : the graph already ran NMS; candidates are its K detections (one-hot classes).
    box_format : ``cxcywh`` / ``xyxy`` in input pixels, or ``-norm`` for fractions of the input.
    scores : how class outputs become probabilities: ``prob`` (already), ``sigmoid``,
        ``softmax-noobj`` (softmax, last slot = no object, dropped), ``softmax``.
    objectness : the head has an objectness column (YOLOv5, YOLOX).
    strides : YOLOX's grid strides (raw grid outputs only).
    names : class names from ``metadata_props`` (Ultralytics ``names``), if any.
    reason : one line: which outputs and which facts decided the kind.
    metadata : the Ultralytics metadata as parsed (``task``, ``imgsz``, ``stride``, ``args``, ...).
    exposed : outputs that are tensors inside the graph (declared in the sidecar), added as
        outputs before the model runs (:func:`expose`): the head before an NMS inside the graph.
    """

    kind: str
    outputs: tuple[str, ...]
    num_classes: int | None
    nms_inside: bool
    box_format: str
    scores: str = "prob"
    objectness: bool = False
    strides: tuple[int, ...] = ()
    names: tuple[str, ...] | None = None
    reason: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    exposed: tuple[str, ...] = ()

    @property
    def needs_nms(self) -> bool:
        """Whether :func:`blackbox_cam.model.nms.non_max_suppression` runs on the candidates."""
        return not self.nms_inside and self.kind not in NMS_FREE


@dataclass(frozen=True)
class Candidates:
    """A batch's candidate boxes before thresholds and NMS (see the module docstring)."""

    boxes: np.ndarray       # float32 [N, A, 4], x0 y0 x1 y1, model-input pixels
    probs: np.ndarray       # float32 [N, A, C]
    objectness: np.ndarray  # float32 [N, A]

    def __len__(self) -> int:
        return len(self.boxes)

    def scores(self) -> np.ndarray:
        """``[N, A, C]``: each candidate's score for each class, ``probs x objectness``."""
        return self.probs * self.objectness[..., None]

    def __getitem__(self, i: int | slice) -> "Candidates":
        s = slice(i, i + 1) if isinstance(i, (int, np.integer)) else i
        return Candidates(self.boxes[s], self.probs[s], self.objectness[s])


@dataclass(frozen=True)
class Detections:
    """One image's detections after thresholds and NMS, in model-input pixels."""

    boxes: np.ndarray       # float32 [K, 4]
    scores: np.ndarray      # float32 [K]
    classes: np.ndarray     # int64 [K]
    probs: np.ndarray       # float32 [K, C]
    objectness: np.ndarray  # float32 [K]
    candidate: np.ndarray   # int64 [K], index into the image's candidates

    def __len__(self) -> int:
        return len(self.scores)


# -- metadata -------------------------------------------------------------------------------------
def ultralytics_metadata(metadata: Sequence[tuple[str, str]] | Mapping[str, str]) -> dict[str, Any]:
    """``metadata_props`` read as Ultralytics' ``AutoBackend`` reads them: every value through
    ``ast.literal_eval`` where it parses (``names`` a dict, ``imgsz`` a list, ``stride`` an int,
    ``args`` a dict, ``end2end`` a bool), else kept as the string. Empty unless ``author`` is
    Ultralytics or a ``task`` key is present."""
    meta = dict(metadata)
    if meta.get("author") != "Ultralytics" and "task" not in meta:
        return {}
    out: dict[str, Any] = {}
    for k, v in meta.items():
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            out[k] = v
    return out


def _names(meta: Mapping[str, Any]) -> tuple[str, ...] | None:
    names = meta.get("names")
    if isinstance(names, dict) and names and all(isinstance(k, int) for k in names):
        return tuple(str(names.get(i, i)) for i in range(max(names) + 1))
    if isinstance(names, (list, tuple)) and names:
        return tuple(str(n) for n in names)
    return None


# -- reading the layout ---------------------------------------------------------------------------
def read_layout(model: onnx.ModelProto, signature, sidecar: Mapping[str, Any] | None = None,
                source: str = "the model") -> DetectorLayout | None:
    """The detector layout of ``model``, or None when it does not look like a detector.

    ``signature`` is the model's :class:`~blackbox_cam.model.signature.ModelSignature` (its input
    size and metadata are read); ``sidecar`` the sidecar's ``"detector"`` object, which wins over
    what the graph suggests. An Ultralytics export of another task (segment, pose, obb) and a
    model that says ``task=detect`` in a layout not listed here are refused in one line.
    """
    outs = {o.name: dims(o) or () for o in model.graph.output}
    meta = ultralytics_metadata(signature.metadata)
    task = meta.get("task")
    if isinstance(task, str) and task in OTHER_TASKS:
        raise BlackboxCamError(f"{source}: an Ultralytics {task} model ({OTHER_TASKS[task]}, metadata task={task!r}); "
                               "blackbox-cam reads box detectors (task=detect) and classifiers, not this head")
    if sidecar:
        return _declared(sidecar, outs, meta, model, signature, source)
    found = _from_graph(outs, meta, model, signature)
    if found is None and task == "detect":
        raise unknown_layout(outs, source, "its metadata says task='detect' but")
    return found


def unknown_layout(outs: Mapping[str, tuple], source: str, why: str = "") -> BlackboxCamError:
    shapes = ", ".join(f"'{n}' {list(d)}" for n, d in outs.items())
    return BlackboxCamError(f"{source}: {why + ' ' if why else ''}its outputs ({shapes}) match no known detector layout; "
                            "declare it in the sidecar as \"detector\": {\"kind\": ..., \"outputs\": [...]} "
                            f"(kinds: {', '.join(KINDS)})")


def _cells(hw: tuple[int, int], strides: Sequence[int]) -> int:
    return sum(math.ceil(hw[0] / s) * math.ceil(hw[1] / s) for s in strides)


def _has_op(model: onnx.ModelProto, op: str) -> bool:
    return any(n.op_type == op for n in model.graph.node)


def _from_graph(outs: dict[str, tuple], meta: dict, model: onnx.ModelProto, sig) -> DetectorLayout | None:
    names = _names(meta)
    nc_meta = len(names) if names else None
    hw = tuple(sig.input_size)
    items = list(outs.items())
    lower = {n.lower(): n for n in outs}
    meta_note = " and metadata task=detect" if meta.get("task") == "detect" else ""

    def lay(kind: str, outputs: Sequence[str], why: str, **kw: Any) -> DetectorLayout:
        defaults = dict(num_classes=nc_meta, nms_inside=kind in NMS_INSIDE, names=names, metadata=meta)
        defaults.update(kw)
        shapes = ", ".join(f"'{o}' {list(outs[o])}" for o in outputs)
        return DetectorLayout(kind, tuple(outputs), reason=f"output {shapes}{meta_note}: {why}", **defaults)

    # TensorRT's EfficientNMS_TRT outputs (Ultralytics/YOLOv7 "engine-ready" ONNX, TF OD API names)
    trt = _roles(lower, {"num": ("num_dets", "num_detections"), "boxes": ("det_boxes", "detection_boxes"),
                         "scores": ("det_scores", "detection_scores"), "classes": ("det_classes", "detection_classes")})
    if trt:
        return lay("trt", trt, "TensorRT EfficientNMS layout (num_dets, boxes, scores, classes; NMS inside)",
                   box_format="xyxy")
    tv = _roles(lower, {"boxes": ("boxes",), "labels": ("labels",), "scores": ("scores",)})
    if tv and len(outs[tv[0]]) == 2 and len(outs[tv[1]]) == 1:
        return lay("torchvision", tv, "torchvision detection-model layout (boxes, labels, scores; NMS inside)",
                   box_format="xyxy")
    det = _roles(lower, {"logits": ("logits", "pred_logits"), "boxes": ("pred_boxes", "boxes")})
    if det and len(outs[det[0]]) == 3 and len(outs[det[1]]) == 3:
        return lay("detr", det, "DETR set-prediction layout (softmax over classes + no-object, normalised boxes)",
                   box_format="cxcywh-norm", scores="softmax-noobj",
                   num_classes=_int(outs[det[0]][2]) - 1 if _int(outs[det[0]][2]) else None)
    if len(items) != 1:
        return None
    name, d = items[0]
    nc = None
    if len(d) == 2 and _int(d[1]) == 7 and not _int(d[0]) and d[0] != sig.input_dims[0]:
        return lay("nms-7", [name], "[K, 7] rows (batch, x0, y0, x1, y1, class, score): YOLOv7 end2end, NMS inside",
                   box_format="xyxy")
    if len(d) != 3:
        return None
    head = meta.get("head")
    if head == "RTDETRDecoder":
        return lay("rtdetr", [name], "Ultralytics RT-DETR decoder (normalised cx, cy, w, h + sigmoid scores)",
                   box_format="cxcywh-norm")
    d1, d2 = _int(d[1]), _int(d[2])
    end2end = bool(meta.get("end2end")) or (isinstance(meta.get("args"), dict) and bool(meta["args"].get("nms")))
    if d2 == 6 and (end2end or (d1 is not None and d1 not in (_cells(hw, (8, 16, 32)), 3 * _cells(hw, (8, 16, 32))))):
        why = "Ultralytics end2end/nms export" if meta else "[B, K, 6] rows"
        return lay("nms-6", [name], f"{why} (x0, y0, x1, y1, score, class; NMS inside)", box_format="xyxy")
    if meta and (d2 is None or (d1 is not None and d1 < d2)):  # channels first
        nc = (d1 - 4) if d1 else nc_meta
        if nc_meta and d1 and d1 != 4 + nc_meta:
            return None  # extra channels (masks, keypoints) without a task that says so: not ours to guess
        return lay("ultralytics", [name], "Ultralytics YOLOv8 layout ([B, 4+C, anchors], cx, cy, w, h px, per-class sigmoid)",
                   box_format="cxcywh", num_classes=nc)
    grids = {_cells(hw, st) for st in ((8, 16, 32), (8, 16, 32, 64), (4, 8, 16, 32))}  # P3-P5, P6, P2 heads
    if d1 is not None and d2 is not None and d1 > 4 and d2 in grids:
        return lay("ultralytics", [name], f"[B, 4+C, {d2} = one anchor per cell of the input's grids]: Ultralytics "
                   "YOLOv8/v11 layout (cx, cy, w, h px, per-class sigmoid)", box_format="cxcywh", num_classes=d1 - 4)
    if d2 is not None and d2 > 5 and (d1 is None or d1 > d2):  # [B, A, 5+C]
        one, three = _cells(hw, (8, 16, 32)), 3 * _cells(hw, (8, 16, 32))
        if d1 == one and not _has_op(model, "Exp"):
            return lay("yolox", [name], f"[B, {one} = one anchor per cell at strides 8/16/32, 5+C] and no Exp in the "
                       "graph: YOLOX raw grid output (decoded here)", box_format="cxcywh", objectness=True,
                       strides=(8, 16, 32), num_classes=d2 - 5)
        if d1 in (None, three, one):
            return lay("yolov5", [name], "[B, anchors, 5+C]: YOLOv5/v7 layout (cx, cy, w, h px, objectness, "
                       "class probabilities)", box_format="cxcywh", objectness=True, num_classes=d2 - 5)
    return None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and v > 0 else None


def _roles(lower: Mapping[str, str], roles: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    found = []
    for aliases in roles.values():
        hit = next((lower[a] for a in aliases if a in lower), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def _declared(side: Mapping[str, Any], outs: dict[str, tuple], meta: dict, model: onnx.ModelProto, sig,
              source: str) -> DetectorLayout:
    where = f"{source}: sidecar \"detector\""
    if not isinstance(side, Mapping):
        raise BlackboxCamError(f"{where} must be an object with keys {', '.join(SIDECAR_KEYS)}")
    bad = sorted(set(side) - set(SIDECAR_KEYS))
    if bad:
        raise BlackboxCamError(f"{where}: unknown key(s) {bad}; valid keys are {', '.join(SIDECAR_KEYS)}")
    kind = side.get("kind")
    if kind not in KINDS:
        raise BlackboxCamError(f"{where}: \"kind\" must be one of {', '.join(KINDS)}, got {kind!r}")
    names = list(side.get("outputs") or [])
    inner = [n for n in names if n not in outs]
    if inner:  # tensors inside the graph (the head before an NMS inside it): exposed as outputs
        known = inner_tensors(model)
        missing = [n for n in inner if n not in known]
        if missing:
            raise BlackboxCamError(f"{where}: {missing} are neither outputs ({list(outs)}) nor tensors of the graph; "
                                   "`blackbox-cam layers --all` lists the tensors")
        outs = {**outs, **{n: known[n] for n in inner}}
    found = _from_graph({n: outs[n] for n in names} if names else outs, meta, model, sig)
    base = found if found is not None and found.kind == kind else None
    defaults = dict(ultralytics=("cxcywh", "prob"), yolov5=("cxcywh", "prob"), yolox=("cxcywh", "prob"),
                    detr=("cxcywh-norm", "softmax-noobj"), rtdetr=("cxcywh-norm", "prob"))
    box, scores = defaults.get(kind, ("xyxy", "prob"))
    outputs = tuple(names) if names else (base.outputs if base else tuple(outs)[:1])
    for key, allowed in (("box_format", BOX_FORMATS), ("scores", SCORE_RULES)):
        if key in side and side[key] not in allowed:
            raise BlackboxCamError(f"{where}: \"{key}\" must be one of {', '.join(allowed)}, got {side[key]!r}")
    classes = side.get("classes")
    if classes is not None and not (isinstance(classes, int) and classes > 0):
        raise BlackboxCamError(f"{where}: \"classes\" must be a positive integer, got {classes!r}")
    strides = tuple(side.get("strides") or ((8, 16, 32) if kind == "yolox" else ()))
    lay = base or DetectorLayout(kind, outputs, None, kind in NMS_INSIDE, box, scores,
                                 objectness=kind in ("yolov5", "yolox"), names=_names(meta), metadata=meta)
    return replace(lay, outputs=outputs, box_format=side.get("box_format", lay.box_format),
                   scores=side.get("scores", lay.scores), strides=strides or lay.strides,
                   num_classes=classes or lay.num_classes, exposed=tuple(inner),
                   reason=f"sidecar \"detector\" declares kind {kind!r} (outputs {list(outputs)}"
                          + (f", {len(inner)} exposed from inside the graph" if inner else "") + ")")


def inner_tensors(model: onnx.ModelProto) -> dict[str, tuple]:
    """Every node output of the graph with its dims after ONNX shape inference (``()`` if unknown)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is a help, not a requirement
        inferred = model
    dims_of = {vi.name: dims(vi) or () for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    return {o: dims_of.get(o, ()) for n in model.graph.node for o in n.output if o}


def expose(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of ``model`` with the tensors ``names`` added to its outputs (float, shape from
    inference), so a session returns the head *before* an NMS inside the graph. The input is
    not changed."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        info = {vi.name: vi for vi in inferred.graph.value_info}
    except Exception:
        info = {}
    for n in names:
        if n in info:
            m.graph.output.append(info[n])
        else:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    return m


# -- decoding: raw outputs -> candidates ----------------------------------------------------------
def _xyxy(b: np.ndarray, fmt: str, hw: tuple[int, int]) -> np.ndarray:
    b = b.astype(np.float32, copy=False)
    if fmt.endswith("-norm"):
        b = b * np.array([hw[1], hw[0], hw[1], hw[0]], np.float32)
    if fmt.startswith("cxcywh"):
        xy, half = b[..., :2], b[..., 2:4] / 2
        return np.concatenate([xy - half, xy + half], axis=-1)
    return np.ascontiguousarray(b)


def _probabilities(z: np.ndarray, rule: str) -> np.ndarray:
    if rule == "prob":
        return z.astype(np.float32, copy=False)
    if rule == "sigmoid":
        return (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return (p[..., :-1] if rule == "softmax-noobj" else p).astype(np.float32)


def _one_hot(classes: np.ndarray, c: int, valid: np.ndarray) -> np.ndarray:
    cls = np.asarray(classes).astype(np.int64)
    out = np.zeros(cls.shape + (c,), np.float32)
    ok = valid & (cls >= 0) & (cls < c)
    idx = np.nonzero(ok)
    out[idx + (cls[idx],)] = 1.0
    return out


def yolox_grid(hw: tuple[int, int], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """YOLOX's ``demo_postprocess`` grid: per anchor the cell ``(x, y)`` and its stride, cells
    row by row, strides in order (Ge et al. 2021, YOLOX, ``yolox/utils/demo_utils.py``)."""
    grids, steps = [], []
    for s in strides:
        h, w = hw[0] // s, hw[1] // s
        xv, yv = np.meshgrid(np.arange(w), np.arange(h))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        steps.append(np.full((h * w, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode(layout: DetectorLayout, raw: Sequence[np.ndarray], input_hw: tuple[int, int],
           num_classes: int | None = None, batch: int = 1) -> Candidates:
    """The :class:`Candidates` of a batch from its raw outputs (in ``layout.outputs`` order).

    ``num_classes`` is the one-hot width for NMS-inside layouts (else the layout's own);
    ``batch`` the number of images, for ``nms-7`` whose rows carry their image's index."""
    hw = (int(input_hw[0]), int(input_hw[1]))
    k = layout.kind
    c = num_classes or layout.num_classes
    if k == "ultralytics":
        out = np.asarray(raw[0], np.float32).transpose(0, 2, 1)  # [B, A, 4+C]
        probs = _probabilities(out[..., 4:], layout.scores)
        return Candidates(_xyxy(out[..., :4], layout.box_format, hw), np.ascontiguousarray(probs),
                          np.ones(out.shape[:2], np.float32))
    if k in ("yolov5", "yolox"):
        out = np.asarray(raw[0], np.float32)
        xywh = out[..., :4]
        if k == "yolox":
            grid, stride = yolox_grid(hw, layout.strides or (8, 16, 32))
            if len(grid) != out.shape[1]:
                raise BlackboxCamError(f"YOLOX grid of {len(grid)} cells at strides {list(layout.strides)} does not "
                                       f"match {out.shape[1]} anchors; set \"strides\" in the sidecar's \"detector\"")
            xywh = np.concatenate([(xywh[..., :2] + grid) * stride, np.exp(xywh[..., 2:4]) * stride], axis=-1)
        return Candidates(_xyxy(xywh, layout.box_format, hw), np.ascontiguousarray(_probabilities(out[..., 5:], layout.scores)),
                          np.ascontiguousarray(out[..., 4]))
    if k == "rtdetr":
        out = np.asarray(raw[0], np.float32)
        return Candidates(_xyxy(out[..., :4], layout.box_format, hw), _probabilities(out[..., 4:], layout.scores),
                          np.ones(out.shape[:2], np.float32))
    if k == "detr":
        logits, boxes = np.asarray(raw[0]), np.asarray(raw[1], np.float32)
        probs = _probabilities(logits, layout.scores)
        return Candidates(_xyxy(boxes, layout.box_format, hw), probs, np.ones(probs.shape[:2], np.float32))
    if c is None:
        raise BlackboxCamError(f"a {k} export (NMS inside) reports class indices but not how many classes there are; "
                               "give a labels file or \"detector\": {\"classes\": C} in the sidecar")
    if k == "nms-6":
        out = np.asarray(raw[0], np.float32)
        boxes, score, cls = out[..., :4], out[..., 4], out[..., 5]
        valid = np.ones(score.shape, bool)
    elif k == "trt":
        num, boxes, score, cls = (np.asarray(r) for r in raw)
        kk = boxes.shape[1]
        valid = np.arange(kk)[None, :] < num.reshape(-1, 1)
        score = np.where(valid, score, 0).astype(np.float32)
    elif k == "nms-7":
        rows = np.asarray(raw[0], np.float32)
        b = int(batch)
        per = [rows[rows[:, 0] == i] for i in range(b)]
        kk = max([len(p) for p in per] + [1])
        boxes = np.zeros((b, kk, 4), np.float32)
        score = np.zeros((b, kk), np.float32)
        cls = np.zeros((b, kk), np.float32)
        valid = np.zeros((b, kk), bool)
        for i, p in enumerate(per):
            boxes[i, :len(p)], cls[i, :len(p)], score[i, :len(p)], valid[i, :len(p)] = p[:, 1:5], p[:, 5], p[:, 6], True
    elif k == "torchvision":
        boxes, cls, score = (np.asarray(r) for r in raw)
        boxes, cls, score = boxes[None], cls[None], score[None].astype(np.float32)
        valid = np.ones(score.shape, bool)
    else:  # pragma: no cover - KINDS is closed
        raise BlackboxCamError(f"unknown detector kind {k!r}")
    return Candidates(_xyxy(boxes, layout.box_format, hw), _one_hot(cls, c, valid),
                      np.where(valid, score, 0).astype(np.float32))
