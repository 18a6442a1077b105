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
from typing import Iterator, Sequence

import numpy as np
import onnx

from .backends import DEVICES, BackendError, Session, compile_model, run_batched
from .errors import BlackboxCamError, BudgetExceeded, existing_file
from .images import resize
from .preprocess import LAYOUTS, Preprocessing, read_sidecar, resolve

_DTYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
           onnx.TensorProto.UINT8: np.uint8}


def make_session(model: onnx.ModelProto | bytes | str, device: str = "auto",
                 threads: int | None = None, backend: str = "onnxruntime") -> Session:
    """A compiled model on ``backend`` and ``device`` (see :func:`blackbox_cam.backends.compile_model`)."""
    return compile_model(model, backend, device, threads=threads)


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Load and sanity-check an ONNX file; every failure is a one-line :class:`BlackboxCamError`."""
    p = existing_file(path, "an .onnx model")
    try:
        model = onnx.load(str(p))
    except Exception as e:  # protobuf raises several unrelated types
        raise BlackboxCamError(f"{p}: not an ONNX model or the file is corrupt ({type(e).__name__}); "
                               "export it again with torch.onnx.export or tf2onnx") from None
    if not model.graph.node:
        raise BlackboxCamError(f"{p}: not an ONNX model or the file is corrupt (the graph has no nodes)")
    return model


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def detect_layout(dims: Sequence[int | str | None]) -> str | None:
    """NCHW if dim 1 looks like channels (1 or 3) and dim 3 does not; NHWC the other way round."""
    c1, c3 = dims[1], dims[3]
    if c1 in (1, 3) and c3 not in (1, 3):
        return "NCHW"
    if c3 in (1, 3) and c1 not in (1, 3):
        return "NHWC"
    if c1 in (1, 3):
        return "NCHW"
    return None


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class Classifier:
    """An ONNX image classifier seen from outside.

    Parameters
    ----------
    path : the ``.onnx`` file. A sidecar ``<model>.json`` beside it supplies preprocessing,
        layout, labels and output; the keyword arguments below override it.
    preprocess : ``imagenet | unit | symmetric | raw`` (see :mod:`blackbox_cam.preprocess`).
    bgr : feed channels as BGR.
    layout : ``NCHW`` or ``NHWC``; detected from the input shape when omitted.
    output : name or index of the output holding the class scores (models with several outputs).
    device : ``auto | cpu | cuda``.
    backend : ``auto | onnxruntime | openvino`` (see :mod:`blackbox_cam.backends`); ``auto`` is
        ONNX Runtime on CUDA when a GPU initialises, else OpenVINO when installed, else ONNX Runtime.
    batch_size : images per model call; the backend's choice for the input size when omitted.
    input_size : ``(H, W)`` for models whose spatial input dims are symbolic.
    labels : file with one class name per line.
    """

    def __init__(self, path: str | os.PathLike, *, preprocess: str | None = None, bgr: bool | None = None,
                 layout: str | None = None, output: str | int | None = None, device: str = "auto",
                 batch_size: int | None = None, input_size: tuple[int, int] | None = None,
                 labels: str | os.PathLike | None = None, backend: str = "auto") -> None:
        self.path = Path(path)
        self.model = load_onnx(self.path)
        self.sidecar = read_sidecar(self.path)
        self.preprocessing: Preprocessing = resolve(self.sidecar, preprocess=preprocess, bgr=bgr,
                                                    source=f"{self.path.with_suffix('.json')}")
        self._check_input(layout, input_size)
        self._choose_output(output if output is not None else self.sidecar.get("output"))
        if batch_size is not None and batch_size <= 0:
            raise BlackboxCamError(f"--batch-size must be a positive integer, got {batch_size}")
        self.device = device
        self.backend_request = backend
        self.queries = 0
        self.on_queries = None  # optional callback(n) after each scored batch (progress bars)
        self._limit: int | None = None
        self._make_sessions()
        bytes_per_image = int(np.prod(self.input_size)) * self.channels * 4
        auto = self.session.auto_batch(bytes_per_image)
        self.batch_size = batch_size or (auto if self._fixed_batch is None else self._fixed_batch)
        self._probe()
        if labels is not None:
            self.labels = self._read_labels(Path(labels))
        else:
            side = self.sidecar.get("labels")
            self.labels = self._read_labels(self.path.parent / side) if side else None
        if self.sidecar.get("resize", "squash") != "squash":
            raise BlackboxCamError(f"{self.path.with_suffix('.json')}: resize {self.sidecar['resize']!r} is not "
                                   "supported; use \"squash\" (the whole image resized to the input size)")

    # -- set-up -------------------------------------------------------------------------------
    def _check_input(self, layout: str | None, input_size: tuple[int, int] | None) -> None:
        ins = _graph_inputs(self.model)
        if len(ins) != 1:
            names = ", ".join(i.name for i in ins) or "none"
            raise BlackboxCamError(f"{self.path}: the model has {len(ins)} inputs ({names}); blackbox-cam explains "
                                   "image classifiers with exactly one image input")
        vi = ins[0]
        self.input_name = vi.name
        elem = vi.type.tensor_type.elem_type
        if elem not in _DTYPES:
            raise BlackboxCamError(f"{self.path}: input '{vi.name}' has element type "
                                   f"{onnx.TensorProto.DataType.Name(elem)}; supported are float32, float16, uint8")
        self.input_dtype = _DTYPES[elem]
        dims = _dims(vi)
        if len(dims) != 4:
            raise BlackboxCamError(f"{self.path}: input '{vi.name}' has shape {dims}, not an image tensor; "
                                   "expected [N,3,H,W] (NCHW) or [N,H,W,3] (NHWC)")
        layout = layout or self.sidecar.get("layout") or detect_layout(dims)
        if layout is None:
            raise BlackboxCamError(f"{self.path}: cannot tell the layout of input '{vi.name}' {dims}; "
                                   "pass --layout NCHW or --layout NHWC")
        layout = str(layout).upper()
        if layout not in LAYOUTS:
            raise BlackboxCamError(f"unknown layout {layout!r}; choose NCHW or NHWC")
        self.layout = layout
        c, h, w = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
        if c not in (1, 3):
            raise BlackboxCamError(f"{self.path}: input '{vi.name}' {dims} has {c} channels in {layout} layout; "
                                   "expected 1 or 3 (wrong --layout?)")
        self.channels = int(c)
        size = input_size or self.sidecar.get("input_size")
        if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
            self.input_size = (h, w)
        elif size:
            self.input_size = (int(size[0]), int(size[1]))
        else:
            raise BlackboxCamError(f"{self.path}: input '{vi.name}' {dims} has no fixed height/width; "
                                   "give input_size [H, W] in the sidecar JSON")
        self._fixed_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None

    def _choose_output(self, output: str | int | None) -> None:
        outs = list(self.model.graph.output)
        names = [o.name for o in outs]
        if output is None:
            two_d = [o for o in outs if len(_dims(o)) == 2]
            chosen = (two_d or outs)[0]
        elif isinstance(output, int) or (isinstance(output, str) and output.isdigit()):
            i = int(output)
            if not 0 <= i < len(outs):
                raise BlackboxCamError(f"{self.path}: --output {i} out of range; outputs are {names}")
            chosen = outs[i]
        elif output in names:
            chosen = outs[names.index(output)]
        else:
            raise BlackboxCamError(f"{self.path}: no output named {output!r}; outputs are {names}")
        self.output_name = chosen.name
        self.output_names = names
        producer = {o: n for n in self.model.graph.node for o in n.output}
        node = producer.get(chosen.name)
        while node is not None and node.op_type in ("Identity", "Reshape", "Flatten", "Squeeze"):
            node = producer.get(node.input[0])
        self._softmax_node = node is not None and node.op_type == "Softmax"

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
        for vi in list(_graph_inputs(m)) + list(m.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if dims:
                dims[0].Clear()
                dims[0].dim_param = "batch"
        try:
            sess = fixed.compile_like(m)
            x = self._random_feed(np.random.default_rng(0), 2)
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

    def _probe(self) -> None:
        """One run on a grey image: number of classes, and whether scores are probabilities."""
        grey = np.full((self.input_size[0], self.input_size[1], 3), 127.0, np.float32)
        try:
            out = self._run(self.prepare(grey)[None])
        except Exception as e:
            raise BlackboxCamError(f"{self.path}: the model fails on a {self.layout} input of size "
                                   f"{self.input_size} ({str(e).splitlines()[0][:200]}); check --layout") from None
        if out.ndim != 2:
            raise BlackboxCamError(f"{self.path}: output '{self.output_name}' has shape {list(out.shape)}; "
                                   "expected class scores [N, classes] (choose another with --output)")
        self.num_classes = int(out.shape[1])
        row = out[0].astype(np.float64)
        sums_to_one = bool(np.all(row >= -1e-6) and np.all(row <= 1 + 1e-6) and abs(row.sum() - 1) < 1e-3)
        self.outputs_probabilities = self._softmax_node or sums_to_one

    def _read_labels(self, p: Path) -> list[str]:
        try:
            names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError as e:
            raise BlackboxCamError(f"{p}: cannot read labels ({e.strerror})") from None
        if len(names) != self.num_classes:
            raise BlackboxCamError(f"{p}: has {len(names)} labels but the model has {self.num_classes} classes")
        return names

    # -- model space ----------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` RGB float [0, 255] -> ``(C, H, W)`` model space at the input size."""
        return self.preprocessing.apply(resize(image, self.input_size), self.channels)

    def to_feed(self, x: np.ndarray) -> np.ndarray:
        """Model-space batch ``(N, C, H, W)`` -> the model's layout and dtype."""
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        if self.input_dtype == np.uint8:
            x = np.clip(np.rint(x), 0, 255)
        return np.ascontiguousarray(x, dtype=self.input_dtype)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs for a model-space batch, not counted (the fixed-batch loop when needed)."""
        step = self._fixed_batch if self._loop else None
        return run_batched(self.session, {self.input_name: self.to_feed(x)}, [self.output_name],
                           step, fixed=self._loop)[0]

    @property
    def providers(self) -> list[str]:
        """ONNX Runtime's execution providers, or ``[<backend>:<DEVICE>]`` for another backend."""
        return list(getattr(self.session, "providers", [f"{self.session.name}:{self.session.device.upper()}"]))

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, classes)`` for a model-space batch; counts ``N`` queries against the budget."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        n = len(x)
        if self._limit is not None and self.queries + n > self._limit:
            raise BudgetExceeded(f"query budget exhausted: {self.queries} used, {n} more asked, "
                                 f"limit {self._limit}")
        outs = []
        for i in range(0, n, self.batch_size):
            outs.append(self._run(x[i:i + self.batch_size]))
            if self.on_queries is not None:
                self.on_queries(len(outs[-1]))
        self.queries += n
        return np.concatenate(outs).astype(np.float32, copy=False)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, classes)``: the output itself if it already is one, else its softmax."""
        s = self.scores(x)
        return s if self.outputs_probabilities else _softmax(s)

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

    def __repr__(self) -> str:
        return (f"Classifier({str(self.path)!r}, layout={self.layout}, input={self.input_size}, "
                f"classes={self.num_classes}, probabilities={self.outputs_probabilities}, backend={self.session.describe()!r})")
