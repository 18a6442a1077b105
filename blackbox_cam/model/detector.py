"""The detector as a black box: images in, candidate boxes out, through the shared model base.

:class:`Detector` is a :class:`blackbox_cam.model.runtime.Model` like the classifier (same
sessions, backends, batching, pipeline, sidecar, labels, query count and budget); only its
output differs. Its black-box query is :meth:`Detector.candidates`: a model-space batch ->
for each image every candidate box with its class probabilities and objectness, *before*
thresholds and NMS (:class:`~blackbox_cam.model.detections.Candidates`), so a per-detection
explanation can score any detection on any masked image (Petsiuk et al. 2021, D-RISE).
:meth:`Detector.detect` applies Ultralytics' default thresholds and NMS
(:mod:`blackbox_cam.model.nms`); :meth:`Detector.to_image_boxes` maps boxes back to the image's
pixels through the exact inverse of the pipeline's geometry.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import BlackboxCamError
from .detections import NMS_INSIDE, Candidates, Detections, decode, ultralytics_metadata
from .nms import CONF, IOU, MAX_DET, non_max_suppression
from .labels import METADATA_KEYS, parse_labels
from .runtime import Model

#: The preprocessing of every Ultralytics export (its predictor's ``LetterBox(auto=False)`` for a
#: fixed-shape file: ``cv2.resize`` INTER_LINEAR on the uint8 image, grey 114 padding centred,
#: RGB, pixels / 255), used when an Ultralytics model has no sidecar of its own.
ULTRALYTICS_SIDECAR = {"preprocess": "unit", "resize": "letterbox", "resample": "cv2-linear", "uint8_resize": True,
                       "pad_color": [114, 114, 114]}
#: Kinds whose outputs have no batch dimension (one image a run).
UNBATCHED = ("nms-7", "torchvision")


def check_thresholds(conf: float, iou: float, max_detections: int) -> None:
    """One line for a threshold out of range (before any model query)."""
    if not (isinstance(conf, (int, float)) and 0.0 <= conf <= 1.0):
        raise BlackboxCamError(f"--conf must be in [0, 1] (Ultralytics' default 0.25), got {conf}")
    if not (isinstance(iou, (int, float)) and 0.0 <= iou <= 1.0):
        raise BlackboxCamError(f"--iou must be in [0, 1] (Ultralytics' default 0.45), got {iou}")
    if not (isinstance(max_detections, int) and max_detections > 0):
        raise BlackboxCamError(f"--max-detections must be a positive integer (default 300), got {max_detections}")


class Detector(Model):
    """An ONNX object detector seen from outside: candidate boxes for images, within a query budget.

    The keyword arguments are :class:`~blackbox_cam.model.runtime.Classifier`'s (``output`` is
    not used: the layout names the outputs; declare another with the sidecar's ``"detector"``
    key) plus the defaults of :meth:`detect`: ``conf`` (0.25), ``iou`` (0.45) and
    ``max_detections`` (300), Ultralytics' defaults. Without a sidecar, an Ultralytics export
    (``metadata_props`` author Ultralytics) gets Ultralytics' own letterbox
    (:data:`ULTRALYTICS_SIDECAR`).

    Attributes
    ----------
    layout : the :class:`~blackbox_cam.model.detections.DetectorLayout` (``signature.detector``).
    nms_inside : the graph already ran NMS (its candidates are the K reported detections).
    num_classes, labels : the classes (labels from ``--labels``, the sidecar or the metadata).
    """

    task = "detector"

    def __init__(self, path: str | os.PathLike, *, conf: float = CONF, iou: float = IOU,
                 max_detections: int = MAX_DET, **kwargs) -> None:
        check_thresholds(conf, iou, max_detections)
        if kwargs.get("output") is not None:
            raise BlackboxCamError(f"{path}: --output chooses a classifier's score output; a detector's outputs come "
                                   "from its layout (declare them with the sidecar's \"detector\": {\"outputs\": [...]})")
        self.conf, self.iou, self.max_detections = float(conf), float(iou), int(max_detections)
        self._labels_arg = kwargs.get("labels")
        super().__init__(path, **kwargs)

    # -- set-up ---------------------------------------------------------------------------------
    default_sidecar_reason = "Ultralytics' letterbox: cv2 linear, grey 114, /255"

    def _default_sidecar(self) -> dict | None:
        meta = ultralytics_metadata([(p.key, p.value) for p in self.model.metadata_props])
        return dict(ULTRALYTICS_SIDECAR) if meta.get("author") == "Ultralytics" else None

    @property
    def detector_layout(self):
        """The :class:`~blackbox_cam.model.detections.DetectorLayout` read once by the model reader."""
        return self.signature.detector

    @property
    def nms_inside(self) -> bool:
        return self.signature.detector.nms_inside

    def _probe(self) -> None:
        """One run on a grey image: the outputs decode, and the number of classes."""
        lay = self.signature.detector
        if lay.kind in UNBATCHED:
            self._loop, self._fixed_batch, self.batch_size = True, 1, 1
        grey = np.full((self.input_size[0], self.input_size[1], 3), 127.0, np.float32)
        c = lay.num_classes or (len(lay.names) if lay.names else None)
        if c is None and lay.kind in NMS_INSIDE:
            c = self._classes_from_labels() or _classes_from_metadata(self.signature.metadata)
        self.num_classes = c
        try:
            cand = self._decode(self._raw(self.prepare(grey)[None]), 1)
        except BlackboxCamError:
            raise
        except Exception as e:
            raise BlackboxCamError(f"{self.path}: the {lay.kind} outputs {list(lay.outputs)} do not decode "
                                   f"({str(e).splitlines()[0][:200]}); declare the layout with the sidecar's "
                                   "\"detector\" key") from None
        self.num_classes = int(cand.probs.shape[-1])

    def _classes_from_labels(self) -> int | None:
        side = self.sidecar.get("labels")
        p = self._labels_arg if self._labels_arg is not None else (self.path.parent / side if side else None)
        if p is None or not os.path.isfile(p):
            return None
        with open(p, encoding="utf-8") as f:
            return sum(1 for ln in f if ln.strip())

    def _read_labels(self, labels) -> None:
        super()._read_labels(labels)
        names = self.signature.detector.names
        if self.labels is None and names and len(names) == self.num_classes:
            self.labels, self.labels_source = list(names), "metadata_props['names']"

    # -- running --------------------------------------------------------------------------------
    def _raw(self, x: np.ndarray) -> list[np.ndarray]:
        lay = self.signature.detector
        if lay.kind in UNBATCHED and len(x) > 1:
            raise BlackboxCamError("internal: unbatched detector run with a batch")  # pragma: no cover
        return self._run_outputs(x, list(lay.outputs))

    def _decode(self, raw: list[np.ndarray], n: int) -> Candidates:
        return decode(self.signature.detector, raw, self.input_size, self.num_classes, batch=n)

    def candidates(self, x: np.ndarray) -> Candidates:
        """Every candidate box of a model-space batch ``(N, C, H, W)`` (see
        :class:`~blackbox_cam.model.detections.Candidates`); counts ``N`` queries against the budget."""
        x = self._counted(x)
        n = len(x)
        parts = []
        step = 1 if self.signature.detector.kind in UNBATCHED else self.batch_size
        for i in range(0, n, step):
            chunk = x[i:i + step]
            parts.append(self._decode(self._raw(chunk), len(chunk)))
            if self.on_queries is not None:
                self.on_queries(len(chunk))
        self.queries += n
        width = max(p.boxes.shape[1] for p in parts)
        cand = Candidates(*(np.concatenate([_pad(getattr(p, f), width) for p in parts]).astype(np.float32, copy=False)
                            for f in ("boxes", "probs", "objectness")))
        bad = ~(np.isfinite(cand.boxes).all(axis=(1, 2)) & np.isfinite(cand.probs).all(axis=(1, 2))
                & np.isfinite(cand.objectness).all(axis=1))
        if bad.any():
            raise BlackboxCamError(f"{self.path}: outputs {list(self.signature.detector.outputs)} hold NaN/inf for "
                                   f"{int(bad.sum())} of {n} image(s); the model (or its preprocessing: wrong "
                                   "--preprocess?) gives no usable boxes for this image")
        return cand

    def select(self, cand: Candidates, *, conf: float | None = None, iou: float | None = None,
               max_detections: int | None = None) -> list[Detections]:
        """Thresholds and NMS (:func:`~blackbox_cam.model.nms.non_max_suppression`) on candidates."""
        conf = self.conf if conf is None else conf
        iou = self.iou if iou is None else iou
        max_det = self.max_detections if max_detections is None else max_detections
        check_thresholds(conf, iou, max_det)
        out = []
        for b, p, o in zip(cand.boxes, cand.probs, cand.objectness):
            idx, scores, classes = non_max_suppression(b, p, o, conf=conf, iou=iou, max_det=max_det,
                                                       nms=self.signature.detector.needs_nms)
            out.append(Detections(b[idx], scores, classes, p[idx], o[idx], idx))
        return out

    def detect(self, x: np.ndarray, *, conf: float | None = None, iou: float | None = None,
               max_detections: int | None = None) -> list[Detections]:
        """One :class:`~blackbox_cam.model.detections.Detections` per image of a model-space batch
        (boxes in model-input pixels; :meth:`to_image_boxes` maps them to the image)."""
        return self.select(self.candidates(x), conf=conf, iou=iou, max_detections=max_detections)

    def to_image_boxes(self, boxes: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Boxes ``[K, 4]`` in model-input pixels -> the ``image_hw`` image's pixels, through the
        exact inverse of the geometry (letterbox offsets, crops, squash: per axis, the input's
        ``inner`` rectangle maps onto the image's ``box``), clipped to the image."""
        pl = self.geometry.place(image_hw, self.input_size)
        top, left, nh, nw = pl.inner
        x0, y0, x1, y1 = pl.box
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        sx, sy = (x1 - x0) / nw, (y1 - y0) / nh
        out = np.empty_like(b)
        out[:, [0, 2]] = (b[:, [0, 2]] - left) * sx + x0
        out[:, [1, 3]] = (b[:, [1, 3]] - top) * sy + y0
        h, w = int(image_hw[0]), int(image_hw[1])
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
        return out.astype(np.float32)

    def __repr__(self) -> str:
        lay = self.signature.detector
        return (f"Detector({str(self.path)!r}, kind={lay.kind}, input={self.input_size}, classes={self.num_classes}, "
                f"nms_inside={lay.nms_inside}, backend={self.session.describe()!r})")


def _classes_from_metadata(metadata) -> int | None:
    """The number of class names in the metadata (``names``, ``labels``, ... as
    :mod:`blackbox_cam.model.labels` reads them), for NMS-inside exports that report indices only."""
    lower = {k.lower(): v for k, v in metadata}
    for key in METADATA_KEYS:
        names = parse_labels(lower[key]) if key in lower else None
        if names:
            return len(names)
    return None


def _pad(a: np.ndarray, width: int) -> np.ndarray:
    """Pad axis 1 (candidates) with zeros to ``width`` (NMS-inside outputs vary in K per run)."""
    if a.shape[1] == width:
        return a
    pad = [(0, 0)] * a.ndim
    pad[1] = (0, width - a.shape[1])
    return np.pad(a, pad)
