"""The model as a black box: images in, class scores out, through one backend session.

:class:`Classifier` copes with what vendors export: NCHW or NHWC input, float32 / float16 /
uint8 input, dynamic or fixed batch (a fixed batch is rewritten to symbolic when the graph
allows it, else the batch is evaluated in a loop), logits or probabilities, several outputs.
It counts every image it scores (``queries``) and enforces a hard query budget, which is what
the black-box methods are measured by.

Everything above this module works in *model space*: float32, channels-first ``(C, H, W)``
arrays that are already normalised; :meth:`Classifier.to_feed` converts to the model's own
layout and dtype at the last moment.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx

from .backends import DEVICES, BackendError, Session, compile_model, run_batched
from .backends.onnxruntime import _quiet_stderr as quiet_stderr
from ..errors import BlackboxCamError, BudgetExceeded, existing_file
from .geometry import Geometry, prepare as geometry_prepare
from .detections import expose
from .labels import labels_from_metadata, read_labels_file
from .preprocess import Preprocessing, resolve
from .sidecar import find_sidecar, load_sidecar, translate
from .signature import ModelSignature, graph_inputs, read_model



def make_session(model: onnx.ModelProto | bytes | str, device: str = "auto",
                 threads: int | None = None, backend: str = "onnxruntime") -> Session:
    """A compiled model on ``backend`` and ``device`` (see :func:`blackbox_cam.model.backends.compile_model`)."""
    return compile_model(model, backend, device, threads=threads)


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and sanity-check an ONNX file; every failure is a one-line :class:`BlackboxCamError`.

    Weights stored as ONNX external data (``<model>.onnx.data`` or per-tensor files beside the
    model, as torch writes for models over 2 GB) are looked up relative to the model's folder;
    a missing one is named, not reported as a corrupt model.
    """
    p = existing_file(path, "an .onnx model")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises several unrelated types
        raise BlackboxCamError(f"{p}: not an ONNX model or the file is corrupt ({type(e).__name__}); "
                               "export it again with torch.onnx.export or tf2onnx") from None
    if not model.graph.node:
        raise BlackboxCamError(f"{p}: not an ONNX model or the file is corrupt (the graph has no nodes)")
    _load_external_data(model, p)
    return model


def _load_external_data(model: onnx.ModelProto, p: Path) -> None:
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    locations = sorted({ExternalDataInfo(t).location for t in _all_tensors(model) if uses_external_data(t)})
    if not locations:
        return
    missing = [loc for loc in locations if not (p.parent / loc).is_file()]
    if missing:
        raise BlackboxCamError(f"{p}: its weights are stored as external data in {', '.join(missing)}, "
                               f"which {'is' if len(missing) == 1 else 'are'} not in {p.parent}; copy "
                               f"{'it' if len(missing) == 1 else 'them'} next to the .onnx file (the paths are "
                               "relative to the model)")
    try:
        load_external_data_for_model(model, str(p.parent))
    except Exception as e:
        raise BlackboxCamError(f"{p}: cannot read its external data {', '.join(locations)} "
                               f"({type(e).__name__}: {str(e)[:200]}); the file may be truncated") from None


def _all_tensors(model: onnx.ModelProto):
    """Every TensorProto of the model: initializers and tensor attributes, in subgraphs too."""
    def graph_tensors(g: onnx.GraphProto):
        yield from g.initializer
        for node in g.node:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    yield from graph_tensors(sub)
    return list(graph_tensors(model.graph))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    return np.exp(-np.logaddexp(0.0, -z))  # 1 / (1 + e^-z) without overflow


def _as_scores(out: np.ndarray) -> np.ndarray:
    """Class scores as ``[N, C]``: ``[N]`` outputs (one score per image, e.g. a squeezed binary
    head) as ``[N, 1]``, and ``[N, C, 1, 1]`` (a 1 x 1 convolution head, as Caffe-era and
    fully convolutional exports have) as ``[N, C]``. Other shapes pass unchanged (and are refused
    by the probe)."""
    if out.ndim == 1:
        return out[:, None]
    if out.ndim > 2 and all(d == 1 for d in out.shape[2:]):
        return out.reshape(out.shape[:2])
    return out


def _fact(name: str) -> property:
    return property(lambda self: getattr(self.signature, name),
                    doc=f"``signature.{name}``: read once from the graph by :func:`~blackbox_cam.model.signature.read_model`.")


class Model:
    """What every ONNX image model shares, whatever its output: the file, the sidecar, the
    pipeline (geometry + normalisation), the signature, the backend sessions, batching, labels,
    the query count and budget, and the painted padding kept while perturbing.

    Subclasses say what the output is: :class:`Classifier` (class scores) and
    :class:`blackbox_cam.model.detector.Detector` (candidate boxes). Each names its
    :attr:`task` (``signature.task`` must match) and implements :meth:`_probe`; the keyword
    arguments are the same (see :class:`Classifier`).
    """

    task = ""

    input_name = _fact("input_name")
    input_dtype = _fact("input_dtype")
    layout = _fact("layout")
    channels = _fact("channels")
    input_size = _fact("input_size")
    output_name = _fact("output_name")
    output_names = _fact("output_names")

    def __init__(self, path: str | os.PathLike, *, preprocess: str | None = None, bgr: bool | None = None,
                 layout: str | None = None, output: str | int | None = None, device: str = "auto",
                 batch_size: int | None = None, input_size: tuple[int, int] | None = None,
                 labels: str | os.PathLike | None = None, backend: str = "auto", resize: str | None = None,
                 crop_pct: float | None = None, sidecar: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.model = load_onnx(self.path)
        self.sidecar_file = find_sidecar(self.path, sidecar)
        self.sidecar = load_sidecar(self.sidecar_file)
        source = str(self.sidecar_file or self.path.with_suffix(".json"))
        if self.sidecar_file is None:
            default = self._default_sidecar()
            if default:
                self.sidecar, source = default, f"{self.path.name}'s metadata ({self.default_sidecar_reason})"
        pipe = translate(self.sidecar, source)
        self.pipeline = pipe
        self.preprocessing: Preprocessing = resolve(pipe, preprocess=preprocess, bgr=bgr, source=source)
        geo = dict(pipe.geometry)
        if resize is not None and resize != geo.get("mode"):  # the flag replaces the resize rule
            geo = {k: v for k, v in geo.items() if k not in ("size", "crop_pct")}
            geo["mode"] = resize
        if crop_pct is not None:
            geo.pop("size", None)
            geo["crop_pct"] = crop_pct
        self.geometry = Geometry(**geo)
        self.signature: ModelSignature = read_model(
            self.model, layout=layout or self.sidecar.get("layout"),
            input_size=input_size or pipe.input_size,
            output=output if output is not None else self.sidecar.get("output"), source=str(self.path),
            detector=self.sidecar.get("detector"))
        self._check_task()
        if self.signature.detector is not None and self.signature.detector.exposed:
            self.model = expose(self.model, self.signature.detector.exposed)  # the head before an inner NMS
        if pipe.input_size is not None and tuple(self.signature.input_size) != tuple(pipe.input_size) \
                and resize is None and crop_pct is None:
            raise BlackboxCamError(f"{source}: the sidecar's steps make {pipe.input_size[0]}x{pipe.input_size[1]} "
                                   f"images but {self.path.name}'s input is "
                                   f"{self.signature.input_size[0]}x{self.signature.input_size[1]}; "
                                   "is it the model's own preprocessing file?")
        self._fixed_batch = self.signature.fixed_batch  # None once the batch is made symbolic
        if batch_size is not None and batch_size <= 0:
            raise BlackboxCamError(f"--batch-size must be a positive integer, got {batch_size}")
        self.device = device
        self.backend_request = backend
        self.queries = 0
        self.on_queries = None  # optional callback(n) after each scored batch (progress bars)
        self._limit: int | None = None
        self._padding: tuple[np.ndarray, np.ndarray] | None = None  # see padding_kept()
        self._make_sessions()
        bytes_per_image = int(np.prod(self.input_size)) * self.channels * 4
        auto = self.session.auto_batch(bytes_per_image)
        self.batch_size = batch_size or (auto if self._fixed_batch is None else self._fixed_batch)
        self._probe()
        self._read_labels(labels)

    def _default_sidecar(self) -> dict | None:
        """The pipeline to use when no sidecar file exists (a family whose preprocessing is fixed,
        e.g. Ultralytics' letterbox); None: the presets' defaults."""
        return None

    default_sidecar_reason = ""

    def _check_task(self) -> None:
        if self.signature.task != self.task:
            from_ = {"detector": "Detector (bc.Detector, bc.open_model, blackbox-cam detect)",
                     "classifier": "Classifier (bc.Classifier, bc.open_model, blackbox-cam explain)"}
            raise BlackboxCamError(f"{self.path}: a {self.signature.task}, not a {self.task} "
                                   f"({self.signature.task_reason}); open it as a {from_[self.signature.task]}")

    def _probe(self) -> None:  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def _read_labels(self, labels: str | os.PathLike | None) -> None:
        """Class names: ``labels`` (a file), else the sidecar's ``labels``, else the metadata."""
        self.labels_source: str | None = None
        side = self.sidecar.get("labels")
        if labels is not None or side:
            p = Path(labels) if labels is not None else self.path.parent / side
            self.labels, self.labels_source = read_labels_file(p, self.num_classes), str(p)
        else:  # neither --labels nor the sidecar names a file: the model's own metadata, if any
            found = labels_from_metadata(dict(self.signature.metadata), self.num_classes)
            self.labels = found[1] if found else None
            self.labels_source = f"metadata_props[{found[0]!r}]" if found else None

    # -- set-up -------------------------------------------------------------------------------
    def _make_sessions(self) -> None:
        """Compile the model on the chosen backend; a fixed batch becomes symbolic where that is exact."""
        self._loop = False
        try:
            self.session: Session = compile_model(self.model, self.backend_request, self.device)
            if self._fixed_batch is not None:
                dyn = self._with_symbolic_batch(self.session)
                if dyn is not None:
                    self.session, self._fixed_batch = dyn, None
                else:
                    self._loop = True
        except BackendError as e:
            raise BackendError(f"{self.path}: {e}") from None

    def _with_symbolic_batch(self, fixed: Session) -> Session | None:
        """The model with its fixed batch rewritten to a symbolic one, compiled like ``fixed``;
        kept only if a batch of 2 gives what two batch-1 runs of ``fixed`` give."""
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        del m.graph.value_info[:]
        for vi in list(graph_inputs(m.graph)) + list(m.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if dims:
                dims[0].Clear()
                dims[0].dim_param = "batch"
        try:
            sess = fixed.compile_like(m)
            x = self._random_feed(np.random.default_rng(0), 2)
            with quiet_stderr():  # a graph that reshapes to its fixed batch fails here, and ORT logs it
                both = sess.run([self.output_name], {self.input_name: x})[0]
            singles = np.concatenate([fixed.run([self.output_name], {self.input_name: x[i:i + 1]})[0]
                                      for i in range(2)])
            if both.shape != singles.shape or not np.allclose(both, singles, rtol=1e-3, atol=1e-4):
                return None
        except Exception:
            return None
        return sess

    def _random_feed(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.uniform(0, 255, size=(self.input_size[0], self.input_size[1], 3)).astype(np.float32)
        return self.to_feed(np.stack([self.prepare(x * (0.5 + 0.5 * i / max(1, n - 1))) for i in range(n)]))

    # -- model space ----------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` RGB float [0, 255] -> ``(C, H, W)`` model space at the input size."""
        return geometry_prepare(image, self.input_size, self.geometry, self.preprocessing, self.channels)

    def to_feed(self, x: np.ndarray) -> np.ndarray:
        """Model-space batch ``(N, C, H, W)`` -> the model's layout and dtype."""
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        if self.input_dtype == np.uint8:
            x = np.clip(np.rint(x), 0, 255)
        return np.ascontiguousarray(x, dtype=self.input_dtype)

    def _run_outputs(self, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
        """The raw outputs ``names`` for a model-space batch, not counted (the fixed-batch loop when needed)."""
        step = self._fixed_batch if self._loop else None
        return run_batched(self.session, {self.input_name: self.to_feed(x)}, names, step, fixed=self._loop)

    def _counted(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a float32 batch with the kept padding painted, counted against the budget."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        if self._padding is not None:  # painted padding is the vendor's, not the image's: never perturbed
            mask, values = self._padding
            x = x.copy()
            x[:, :, mask] = values
        n = len(x)
        if self._limit is not None and self.queries + n > self._limit:
            raise BudgetExceeded(f"query budget exhausted: {self.queries} used, {n} more asked, "
                                 f"limit {self._limit}")
        return x

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers, or ``[<backend>:<DEVICE>]`` for another backend."""
        return list(getattr(self.session, "providers", [f"{self.session.name}:{self.session.device.upper()}"]))

    @contextlib.contextmanager
    def padding_kept(self, x: np.ndarray, image_hw: tuple[int, int]) -> Iterator[None]:
        """Within the block, every scored input keeps ``x``'s painted padding (a letterbox's
        ``pad_color``): the perturbation methods mask the image, not the vendor's border, which
        the model always saw as that colour. Nothing changes where no padding is painted."""
        pl = self.geometry.place(image_hw, self.input_size)
        top, left, nh, nw = pl.inner
        if self.geometry.pad_color is None or (nh, nw) == tuple(self.input_size):
            yield
            return
        mask = np.ones(tuple(self.input_size), bool)
        mask[top:top + nh, left:left + nw] = False
        old, self._padding = self._padding, (mask, np.asarray(x, np.float32)[:, mask].copy())
        try:
            yield
        finally:
            self._padding = old

    @contextlib.contextmanager
    def limit(self, budget: int | None) -> Iterator[None]:
        """Within the block, at most ``budget`` more queries; more raises :class:`BudgetExceeded`."""
        old = self._limit
        self._limit = None if budget is None else self.queries + int(budget)
        try:
            yield
        finally:
            self._limit = old

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else str(index)


class Classifier(Model):
    """An ONNX image classifier seen from outside: scores for images, within a query budget.

    What the graph says about the model (input, layout, size, outputs, softmax tail) is read
    once into :attr:`signature` (:class:`~blackbox_cam.model.signature.ModelSignature`); the
    attributes ``input_name``, ``input_dtype``, ``layout``, ``channels``, ``input_size``,
    ``output_name`` and ``output_names`` are views of it.

    Parameters
    ----------
    path : the ``.onnx`` file. A sidecar (``<model>.json`` or ``preprocessor_config.json`` beside it,
        see :mod:`blackbox_cam.model.sidecar`) supplies preprocessing, layout, labels and output;
        the keyword arguments below override it.
    preprocess : ``imagenet | unit | symmetric | raw`` (see :mod:`blackbox_cam.model.preprocess`).
    bgr : feed channels as BGR.
    layout : ``NCHW`` or ``NHWC``; detected from the input shape when omitted.
    output : name or index of the output holding the class scores (models with several outputs).
    device : ``auto | cpu | cuda``.
    backend : ``auto | onnxruntime | openvino`` (see :mod:`blackbox_cam.model.backends`); ``auto`` is
        ONNX Runtime, on CUDA when a GPU initialises, else on CPU (:data:`~blackbox_cam.model.backends.AUTO_REASON`).
    batch_size : images per model call; the backend's choice for the input size when omitted.
    input_size : ``(H, W)`` for models whose spatial input dims are symbolic.
    labels : file with one class name per line.
    resize : ``squash | crop | letterbox``, how images reach the input size (:mod:`blackbox_cam.model.geometry`).
    crop_pct : the kept fraction of the scaled image (default 0.875 for ``crop``, 1 otherwise, as timm/torchvision).
    sidecar : the sidecar file (ours, a Hugging Face ``preprocessor_config.json`` or a timm config);
        default ``<model>.json``, else ``preprocessor_config.json`` beside the model.
    """

    task = "classifier"

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Raw class-score output for a model-space batch, not counted."""
        return self._run_outputs(x, [self.output_name])[0]

    def _probe(self) -> None:
        """One run on a grey image: number of classes, and whether scores are probabilities.

        An output of width 1 (``[N, 1]`` or ``[N]``) is a **binary classifier**: class 1 is the
        positive class, class 0 the negative one. Its value is a probability when a Sigmoid
        makes it or when it lies in [0, 1] on the grey image and five plain ones (black, white,
        red, green, blue: they push a logit's range); otherwise it
        is a logit and its sigmoid is the probability (pytorch-grad-cam's
        ``BinaryClassifierOutputTarget`` convention: +output for class 1, -output for class 0).
        """
        grey = np.full((self.input_size[0], self.input_size[1], 3), 127.0, np.float32)
        try:
            out = _as_scores(self._run(self.prepare(grey)[None]))
        except Exception as e:
            raise BlackboxCamError(f"{self.path}: the model fails on a {self.layout} input of size "
                                   f"{self.input_size} ({str(e).splitlines()[0][:200]}); check --layout") from None
        if out.ndim != 2:
            raise BlackboxCamError(f"{self.path}: output '{self.output_name}' has shape {list(out.shape)}; "
                                   "expected class scores [N, classes] (choose another with --output)")
        self.binary = out.shape[1] == 1
        if self.binary:
            self.num_classes = 2
            seen = np.concatenate([out[:, 0], _as_scores(self._run(np.stack(
                [self.prepare(im) for im in self._plain_images()])))[:, 0]])
            in_unit = bool(np.all(np.isfinite(seen)) and seen.min() >= 0.0 and seen.max() <= 1.0)
            self.outputs_probabilities = self.signature.sigmoid or in_unit
            return
        self.num_classes = int(out.shape[1])
        row = out[0].astype(np.float64)
        sums_to_one = bool(np.all(row >= -1e-6) and np.all(row <= 1 + 1e-6) and abs(row.sum() - 1) < 1e-3)
        self.outputs_probabilities = self.signature.softmax or sums_to_one

    def _plain_images(self) -> list[np.ndarray]:
        colours = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
        return [np.broadcast_to(np.asarray(c, np.float32), self.input_size + (3,)).copy() for c in colours]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, classes)`` for a model-space batch; counts ``N`` queries against the budget."""
        x = self._counted(x)
        n = len(x)
        outs = []
        for i in range(0, n, self.batch_size):
            outs.append(_as_scores(self._run(x[i:i + self.batch_size])))
            if self.on_queries is not None:
                self.on_queries(len(outs[-1]))
        self.queries += n
        out = np.concatenate(outs).astype(np.float32, copy=False)
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():  # an honest error for this image, not a NaN class picked as top-1
            raise BlackboxCamError(f"{self.path}: output '{self.output_name}' holds NaN/inf for {int(bad.sum())} of "
                                   f"{n} image(s); the model (or its preprocessing: zero std? wrong --preprocess?) "
                                   "gives no usable scores for this image")
        return out

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, classes)``: the output itself if it already is one, else its
        softmax; for a binary head (width 1) the columns are ``[1 - p, p]`` (class 1 = positive)."""
        return self.as_probabilities(self.scores(x)).astype(np.float32)

    def as_probabilities(self, s: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, C)`` (as :meth:`scores` returns them) as probabilities, float64 where
        they are computed here (softmax, sigmoid), so log-odds near 0 or 1 keep their digits."""
        if self.binary:
            p = s[:, 0].astype(np.float64) if self.outputs_probabilities else _sigmoid(s[:, 0])
            return np.stack([1.0 - p, p], axis=1)
        if self.outputs_probabilities:
            return s
        z = s.astype(np.float64) - s.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def __repr__(self) -> str:
        return (f"Classifier({str(self.path)!r}, layout={self.layout}, input={self.input_size}, "
                f"classes={self.num_classes}, probabilities={self.outputs_probabilities}, backend={self.session.describe()!r})")
