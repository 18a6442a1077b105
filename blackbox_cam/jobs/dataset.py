"""Dataset inputs for every command that takes many images, and the per-image map cache.

Three things every dataset command (``explain``, ``compare``, ``global``, ``gate``, ...) needs:

:func:`expand_inputs`
    Files, folders and manifest CSVs -> one deterministic list of :class:`Item`.

    * a **file** is one item (whatever it holds: a missing or corrupt file fails later, when it
      is loaded, with a one-line error, and the batch goes on);
    * a **folder** is searched recursively for files with an image extension
      (:data:`IMAGE_EXTENSIONS`, case-insensitive), sorted by their path relative to the folder
      (same order on every machine); any other file in it (a labels CSV, notes) becomes a
      *skipped* item (:attr:`Item.skip`): commands list it and go on without counting it as a
      failure, so a stray file is reported, never silently dropped; hidden files and folders
      (names starting with ``.``) are ignored;
    * a **manifest** is a ``.csv`` file with a header that has an ``image`` column (paths
      relative to the CSV's folder, or absolute) and optionally a ``label`` column (a class
      index or name, see :func:`resolve_label`). A manifest without an ``image`` column is a
      user error raised at once (exit 2), since nothing in it can be run.

    The same file reached twice (named and inside a folder, or listed twice) is kept once, at its
    first place: a dataset average must not count an image twice.

:func:`read_ground_truth`
    A CSV with header ``image,label`` -> :class:`GroundTruth` (label = class index or name,
    checked against the model's labels once, up front, with the CSV line in the error).

:class:`MapCache`
    Per-image results under ``OUT/maps/``, keyed by the image file's content hash, the method,
    its options, budget, seed and target, the model file's hash and the classifier's
    preprocessing (:meth:`MapCache.key`). Entries are written atomically
    (:mod:`blackbox_cam.io.output`), so an interrupted or extended run resumes where it stopped,
    never recomputes a map and never mixes results of different settings.
    :func:`explain_cached` is :func:`blackbox_cam.explainer.pipeline.explain_image` through the cache.

Typical use::

    items = expand_inputs(["scans/", "extra.csv"])
    cache = MapCache(out_dir, clf)
    for it in items:
        try:
            image = it.load()
            res, hit = explain_cached(clf, image, "gradcam", cache=cache, digest=it.digest())
        except BlackboxCamError as e:
            record_failure(it, e)     # and go on
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import BlackboxCamError
from ..explainer.pipeline import Scored, explain_scored, make_result, map_to_image, resolve_target, score_image
from ..methods import Call, Explanation, get_method

#: File name endings treated as images when a folder is expanded (compared lower-case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
MANIFEST_EXTENSIONS = (".csv",)


@dataclass(frozen=True)
class Item:
    """One image of a dataset run.

    Attributes
    ----------
    path : the file (as given, or joined to its folder / manifest folder).
    name : a readable name, unique within one :func:`expand_inputs` result: the path relative
        to its folder (POSIX separators), the manifest's cell, or the file name for a file
        argument; two ``a.png`` become ``a.png`` and ``a-2.png``. :meth:`stem` turns it into a
        file-name stem for outputs.
    label : the raw ``label`` cell of a manifest row (``None`` otherwise); resolve it with
        :func:`resolve_label`.
    origin : where the item came from (``"arg"``, the folder, or ``"manifest.csv:LINE"``), for
        error messages.
    error : a problem known before loading (e.g. not an image file); :meth:`load` raises it.
    skip : the item is a non-image file found in a folder: commands record it as skipped (with
        ``error`` as the reason) and do not count it as a failure.
    """

    path: Path
    name: str
    label: str | None = None
    origin: str = "arg"
    error: str | None = None
    skip: bool = False

    def load(self) -> np.ndarray:
        """The image as float32 RGB ``(H, W, 3)`` in [0, 255]; a bad item raises :class:`BlackboxCamError`."""
        return self.read()[0]

    def read(self) -> tuple[np.ndarray, tuple[int, int]]:
        """``(image, (H, W) of the original file)``: large images are worked on reduced
        (:func:`blackbox_cam.io.images.read_image`); a bad item raises :class:`BlackboxCamError`."""
        if self.error is not None:
            raise BlackboxCamError(self.error)
        from ..io.images import read_image
        return read_image(self.path)

    def stem(self) -> str:
        """``name`` without its extension, folders joined by ``__`` (``sub/a.png`` -> ``sub__a``)."""
        p = Path(self.name)
        return "__".join(part for part in p.with_suffix("").parts if part not in ("", ".", "..", "/")) or "image"

    def digest(self) -> str:
        """SHA-256 of the file's bytes (the cache key's image part); errors as in :meth:`load`."""
        if self.error is not None:
            raise BlackboxCamError(self.error)
        return file_digest(self.path)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Item]:
    """Files, folders and manifest CSVs -> a deterministic list of :class:`Item` (see module doc).

    Raises :class:`BlackboxCamError` only for problems with an input as a whole (a manifest that
    cannot be read or has no ``image`` column, an empty folder); a bad single image is an item
    whose :meth:`Item.load` raises.
    """
    out: list[Item] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = _walk(p)
            if not found:
                raise BlackboxCamError(f"{p}: folder holds no files; pass image files, folders of images "
                                       "or a manifest CSV")
            out.extend(found)
        elif p.suffix.lower() in MANIFEST_EXTENSIONS and p.is_file():
            out.extend(read_manifest(p))
        else:
            out.append(Item(p, p.name or str(raw)))
    return _unique(out)


def _walk(root: Path) -> list[Item]:
    items = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if f.startswith("."):
                continue
            path = Path(dirpath) / f
            rel = path.relative_to(root).as_posix()
            err = None
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                err = (f"{path}: skipped, not an image file (extension {path.suffix or 'none'!r}); folders are "
                       f"searched for {', '.join(IMAGE_EXTENSIONS)}")
            items.append(Item(path, rel, origin=str(root), error=err, skip=err is not None))
    items.sort(key=lambda it: it.name)
    return items


def read_manifest(path: str | os.PathLike) -> list[Item]:
    """Items of a manifest CSV: header with ``image`` (relative to the CSV's folder) and optional ``label``."""
    p = Path(path)
    rows = read_csv_rows(p, "manifest", ("image",), "image[,label]")
    base = p.parent
    items = []
    for line, row in rows:
        cell = row["image"]
        if not cell:
            raise BlackboxCamError(f"{p}, line {line}: empty image cell; every row names an image file")
        img = Path(cell)
        items.append(Item(img if img.is_absolute() else base / img, cell, row.get("label") or None,
                          origin=f"{p}:{line}"))
    if not items:
        raise BlackboxCamError(f"{p}: manifest lists no images (only a header)")
    return items


def read_csv_rows(p: Path, what: str, required: Sequence[str],
                  expected: str | None = None) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV as ``(line number, {lower-case column: stripped cell})``, blank rows skipped.

    The header must hold the ``required`` columns (extra ones are kept); every problem is a
    :class:`BlackboxCamError` naming the file and line. ``expected`` is the header shown in
    the error (default: the required columns).
    """
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BlackboxCamError(f"{p}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BlackboxCamError(f"{p}: cannot read the {what} file ({e}); expected a UTF-8 CSV") from None
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    cols = [h.strip().lower() for h in header or []]
    missing = [c for c in required if c not in cols]
    if missing:
        raise BlackboxCamError(f"{p}, line 1: header lacks {', '.join(missing)}; expected a {what} header "
                               f"{expected or ','.join(required)}")
    out = []
    for line, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < len(cols):
            raise BlackboxCamError(f"{p}, line {line}: {len(row)} fields but the header has {len(cols)}")
        out.append((line, {c: row[i].strip() for i, c in enumerate(cols)}))
    return out


def _unique(items: list[Item]) -> list[Item]:
    """Drop repeats of the same file (first kept); make names unique (``a.png``, ``a-2.png``)."""
    seen_files: set[str] = set()
    names: dict[str, int] = {}
    out = []
    for it in items:
        try:
            ident = str(it.path.resolve())
        except OSError:
            ident = str(it.path)
        if ident in seen_files:
            continue
        seen_files.add(ident)
        n = names.get(it.name, 0) + 1
        names[it.name] = n
        if n > 1:
            stem, dot, ext = it.name.rpartition(".")
            it = Item(it.path, f"{stem}-{n}.{ext}" if dot else f"{it.name}-{n}", it.label, it.origin, it.error,
                      it.skip)
        out.append(it)
    return out


# -- labels and ground truth ----------------------------------------------------------------------
def resolve_label(value: str | int, labels: Sequence[str] | None, num_classes: int, where: str = "") -> int:
    """A class index (``"3"``) or a class name (case-insensitive) -> index in ``0..num_classes-1``."""
    at = f"{where}: " if where else ""
    s = str(value).strip()
    if s.lstrip("-").isdigit():
        i = int(s)
        if not 0 <= i < num_classes:
            raise BlackboxCamError(f"{at}label {i} is out of range: the model has {num_classes} classes "
                                   f"(0..{num_classes - 1})")
        return i
    names = [n.lower() for n in labels or []]
    if s.lower() in names:
        return names.index(s.lower())
    if not names:
        raise BlackboxCamError(f"{at}label {s!r} is a name but the model has no labels file; "
                               "use class indices or pass --labels")
    shown = ", ".join(repr(n) for n in list(labels)[:8]) + (", ..." if len(labels) > 8 else "")
    raise BlackboxCamError(f"{at}label {s!r} is not one of the model's labels ({shown}) nor an index")


@dataclass
class GroundTruth:
    """Known classes of images, from :func:`read_ground_truth`.

    Looked up by resolved file path, else by the path as written relative to the CSV, else by
    file name when that name is unique in the CSV.
    """

    source: Path
    by_path: dict[str, int] = field(default_factory=dict)
    by_name: dict[str, int | None] = field(default_factory=dict)

    def get(self, item: Item) -> int | None:
        """The item's class index, or ``None`` when the CSV does not list it."""
        try:
            key = str(item.path.resolve())
        except OSError:
            key = str(item.path)
        if key in self.by_path:
            return self.by_path[key]
        return self.by_name.get(item.path.name)

    def __len__(self) -> int:
        return len(self.by_path)


def read_ground_truth(path: str | os.PathLike, labels: Sequence[str] | None, num_classes: int) -> GroundTruth:
    """Read a CSV with header ``image,label`` (label = class index or name) into a :class:`GroundTruth`.

    Image paths are relative to the CSV's folder (or absolute; a bare file name also matches an
    input of that name). Every label is validated against the model's ``labels`` /
    ``num_classes`` here, so a wrong CSV fails before any image is explained.
    """
    p = Path(path)
    rows = read_csv_rows(p, "ground-truth", ("image", "label"))
    gt = GroundTruth(p)
    for line, row in rows:
        if not row["image"] or not row["label"]:
            raise BlackboxCamError(f"{p}, line {line}: image and label must both be given")
        idx = resolve_label(row["label"], labels, num_classes, where=f"{p}, line {line}")
        img = Path(row["image"])
        full = img if img.is_absolute() else p.parent / img
        try:
            key = str(full.resolve())
        except OSError:
            key = str(full)
        if key in gt.by_path and gt.by_path[key] != idx:
            raise BlackboxCamError(f"{p}, line {line}: {row['image']!r} is listed again with another label")
        gt.by_path[key] = idx
        name = img.name
        gt.by_name[name] = idx if name not in gt.by_name or gt.by_name[name] == idx else None
    if not rows:
        raise BlackboxCamError(f"{p}: the ground-truth file lists no images (only a header)")
    gt.by_name = {k: v for k, v in gt.by_name.items() if v is not None}
    return gt


# -- hashing ----------------------------------------------------------------------------------------
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (memoised by path, size and mtime)."""
    from ..errors import existing_file
    p = existing_file(path, "an image file")
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _DIGESTS:
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            raise BlackboxCamError(f"{p}: cannot be read ({e.strerror or e})") from None
        if len(_DIGESTS) > 100_000:
            _DIGESTS.clear()
        _DIGESTS[memo] = h.hexdigest()
    return _DIGESTS[memo]


# -- the map cache ------------------------------------------------------------------------------------
@dataclass
class CachedMap:
    """A cached per-image result: the map at the model input size and what it was computed for."""

    saliency: np.ndarray            # float32 (H, W) at the model input size, [0, 1]
    target: int
    score: float                    # target probability on the unmasked image
    predicted: int
    predicted_score: float
    queries: int
    seconds: float
    params: dict[str, Any]
    method: str
    se: np.ndarray | None = None                  # the map's standard error (black-box methods)
    uncertainty: dict[str, Any] | None = None     # stability, significance, --budget auto's record
    warning: str | None = None
    extra: dict[str, Any] | None = None           # DE-CAM's search record, from a unit (never cached)


class MapCache:
    """Per-image maps under ``OUT/maps/<key>.npz``, one file per (image, settings) key.

    Parameters
    ----------
    out_dir : the command's output folder (the cache lives in ``out_dir/maps``).
    clf : the :class:`~blackbox_cam.model.runtime.Classifier`; its model file's hash and its
        preprocessing, layout, input size, output and execution provider are part of every key.

    ``get``/``put`` count ``hits`` and ``misses`` so a caller can report what was reused.
    """

    VERSION = 1

    def __init__(self, out_dir: str | os.PathLike, clf: Any) -> None:
        from ..io.output import ensure_dir
        self.dir = ensure_dir(Path(out_dir) / "maps")
        self.model_digest = file_digest(clf.path)
        pre = getattr(clf, "preprocessing", None)
        self._model_facts = {
            "model_sha256": self.model_digest,
            "preprocessing": repr(pre),
            "geometry": repr(getattr(clf, "geometry", None)),
            "layout": getattr(clf, "layout", None),
            "input_size": list(getattr(clf, "input_size", ()) or ()),
            "output": getattr(clf, "output_name", None),
            "provider": (getattr(clf, "providers", None) or ["?"])[0],
        }
        record = getattr(clf, "pipeline_record", None)
        if record is not None and (clf.preprocess_fn or clf.postprocess_fn or clf.score_kind != "probability"):
            self._model_facts["pipeline"] = record()   # the functions' SHA-256 and --score
        self.hits = 0
        self.misses = 0

    def key(self, digest: str, method: str, *, target: str | int | None, budget: int | None, seed: int,
            options: dict[str, Any] | None = None) -> str:
        """The cache key: SHA-256 over the image digest, method, options, budget, seed, target and model facts.

        ``target`` is the requested target as the method sees it: ``None``/``"top1"`` for the
        prediction (deterministic for a given model and image) or a class index.
        """
        from .._version import __version__
        tgt = "top1" if target is None or str(target).lower() == "top1" else str(int(target))
        blob = json.dumps({"v": self.VERSION, "package": __version__, "image_sha256": digest, "method": method,
                           "options": {k: options[k] for k in sorted(options or {})}, "budget": budget,
                           "seed": int(seed), "target": tgt, **self._model_facts},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def get(self, key: str) -> CachedMap | None:
        """The map entry for ``key``, or ``None`` (also for an unreadable entry, which is then recomputed)."""
        got = self.load(key)
        if got is None:
            return None
        arrays, meta = got
        try:
            se = np.asarray(arrays["se"], np.float32) if "se" in arrays else None
            return CachedMap(saliency=np.asarray(arrays["saliency"], np.float32), se=se, **meta)
        except (KeyError, TypeError):
            self.hits -= 1
            self.misses += 1
            return None

    def put(self, key: str, entry: CachedMap) -> None:
        """Write a map entry atomically (a crash leaves the old state, never half a file)."""
        meta = {k: getattr(entry, k) for k in ("target", "score", "predicted", "predicted_score", "queries",
                                              "seconds", "params", "method", "uncertainty", "warning")}
        arrays = {"saliency": np.asarray(entry.saliency, np.float32)}
        if entry.se is not None:
            arrays["se"] = np.asarray(entry.se, np.float32)
        self.store(key, arrays, meta)

    def load(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """Any entry's ``(arrays, meta)``, or ``None`` when absent or damaged (counted as a miss)."""
        p = self.path(key)
        if not p.exists():
            self.misses += 1
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: np.asarray(z[k]) for k in z.files if k != "meta"}
        except Exception:  # a damaged entry (disk full, foreign file): recompute it
            self.misses += 1
            return None
        self.hits += 1
        return arrays, meta

    def store(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Write any entry (numpy arrays + JSON metadata) atomically under ``key``."""
        import io
        from ..io.output import strict_json, write_bytes
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(strict_json(meta), allow_nan=False)), **arrays)
        write_bytes(self.path(key), buf.getvalue())

    def derived_key(self, kind: str, **parts: Any) -> str:
        """A key for results derived from maps (e.g. PEPPR curves): ``kind`` + ``parts`` + the model facts."""
        from .._version import __version__
        blob = json.dumps({"v": self.VERSION, "package": __version__, "kind": kind, **parts, **self._model_facts},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def explain_cached(clf: Any, image: np.ndarray, method: str | Call, *, cache: MapCache | None, digest: str | None,
                   target: str | int | None = None, budget: int | None = None, seed: int = 0,
                   scored: Scored | Callable[[], Scored] | None = None, **options: Any):
    """:func:`~blackbox_cam.explainer.pipeline.explain_image` through ``cache``: ``(Result, hit)``.

    ``method`` is a registry name (``budget`` and ``options`` are then checked here, before any
    query) or a :class:`~blackbox_cam.methods.Call` already checked with them. The key holds the
    call's effective budget and options (defaults filled in), so ``--grid 8`` and the default hit
    the same entry. ``scored`` is the image's unmasked prediction when the caller has it (or a
    function making it, called only on a miss), so several methods share one.

    On a hit no query is made and the :class:`~blackbox_cam.explainer.pipeline.Result` is rebuilt from the
    cached model-resolution map (resized to ``image`` exactly as ``explain_image`` does);
    ``Explanation.extra`` (e.g. DE-CAM's trace) is not cached and is empty on a hit.
    Without a cache (or digest) this is ``explain_image``.
    """
    call = method if isinstance(method, Call) else get_method(method).bind(budget, clf.input_size, **options)
    key = None
    if target is not None and str(target).lower() != "top1":
        target = resolve_target(clf, target)    # a label name keys the same as its index
    if cache is not None and digest is not None:
        auto = {"budget auto, stability": call.auto.stability} if call.auto is not None else {}
        key = cache.key(digest, call.spec.name, target=target, budget=call.budget, seed=seed,
                        options={**call.options, **auto})
        hit = cache.get(key)
        if hit is not None:
            ex = Explanation(hit.saliency, hit.target, hit.score, hit.queries, hit.seconds, hit.params, hit.method,
                             warning=hit.warning, se=hit.se, uncertainty=hit.uncertainty)
            sal = np.clip(map_to_image(clf, hit.saliency, image.shape[:2], model_space=call.spec.whitebox),
                          0.0, 1.0).astype(np.float32)
            res = make_result(clf, ex, sal, hit.predicted, hit.predicted_score, hit.target, hit.score, image)
            res.cached = True
            return res, True
    if scored is None:
        scored = score_image(clf, image, target)
    elif callable(scored):
        scored = scored()
    res = explain_scored(clf, scored, call, seed=seed)
    if key is not None:
        ex = res.explanation
        cache.put(key, CachedMap(ex.saliency, res.target, res.score, res.predicted, res.predicted_score,
                                 ex.queries, ex.seconds, ex.params, ex.method, ex.se, ex.uncertainty, ex.warning))
    return res, False


# -- per-image map units (the same in-process and on a Ray worker) -----------------------------------
@dataclass(frozen=True)
class MapRequest:
    """A checked :class:`~blackbox_cam.methods.Call` in picklable form (name, effective budget,
    options, ``--budget auto``), so a worker runs exactly the call the driver checked."""

    method: str
    budget: int | None
    options: tuple[tuple[str, Any], ...]
    auto: Any = None

    @classmethod
    def of(cls, call: Call) -> "MapRequest":
        return cls(call.spec.name, call.budget, tuple(sorted(call.options.items())), call.auto)

    def call(self) -> Call:
        from types import MappingProxyType
        return Call(get_method(self.method), self.budget, MappingProxyType(dict(self.options)), self.auto)


def cache_key(cache: MapCache, digest: str, call: Call, target: int | str | None, seed: int) -> str:
    """The key :func:`explain_cached` files ``call``'s map under (``target``: None/top1 or an index)."""
    auto = {"budget auto, stability": call.auto.stability} if call.auto is not None else {}
    return cache.key(digest, call.spec.name, target=target, budget=call.budget, seed=seed,
                     options={**call.options, **auto})


def entry_of(res: Any) -> CachedMap:
    """A :class:`~blackbox_cam.explainer.pipeline.Result` as the cache stores it, plus DE-CAM's
    ``search`` record (``explain.json`` carries it; the cache does not)."""
    ex = res.explanation
    entry = CachedMap(np.asarray(ex.saliency, np.float32), res.target, res.score, res.predicted,
                      res.predicted_score, ex.queries, ex.seconds, ex.params, ex.method,
                      None if ex.se is None else np.asarray(ex.se, np.float32), ex.uncertainty, ex.warning)
    if "search" in ex.extra:
        entry.extra = {"search": ex.extra["search"]}
    return entry


def result_of(clf: Any, entry: CachedMap, image: np.ndarray) -> Any:
    """The :class:`~blackbox_cam.explainer.pipeline.Result` of ``entry`` on ``image`` (the map
    brought to the image's size exactly as :func:`~blackbox_cam.explainer.pipeline.explain_scored`
    does), whether the entry came from the cache or from a unit."""
    ex = Explanation(np.asarray(entry.saliency, np.float32), entry.target, entry.score, entry.queries,
                     entry.seconds, entry.params, entry.method, extra=dict(getattr(entry, "extra", None) or {}),
                     warning=entry.warning, se=entry.se, uncertainty=entry.uncertainty)
    sal = np.clip(map_to_image(clf, ex.saliency, image.shape[:2]), 0.0, 1.0).astype(np.float32)
    return make_result(clf, ex, sal, entry.predicted, entry.predicted_score, entry.target, entry.score, image)


def maps_unit(clf: Any, source: Any, requests: Sequence[MapRequest], target: int | str | None,
              seed: int) -> list[CachedMap | Any]:
    """Run each request on one image (scored once: one unmasked query shared by all methods):
    one :class:`CachedMap` per request, or :class:`~blackbox_cam.jobs.executors.Failed` for the
    requests (or the image) that failed. Never raises for a bad image: the batch goes on."""
    from .executors import failed
    try:
        image, _size = source.read()
        scored = score_image(clf, image, target)
    except Exception as e:
        return [failed(source.name, e)] * len(requests)
    out: list[Any] = []
    for req in requests:
        try:
            out.append(entry_of(explain_scored(clf, scored, req.call(), seed=seed)))
        except Exception as e:  # one method failing must not lose the others
            out.append(failed(source.name, e))
    return out


@dataclass
class ImageMaps:
    """One image of a dataset run with its maps: ``results[method] = (Result, made)`` (``made``:
    computed in this run, not taken from the cache) or ``errors[method]`` (one line).
    ``error`` is set (and nothing else) when the image itself could not be read."""

    item: Any
    image: np.ndarray | None = None
    size: tuple[int, int] | None = None
    digest: str | None = None
    results: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    extra: Any = None       # what a job's own unit returned beside the maps (e.g. compare's metric rows)


def explain_items(clf: Any, items: Iterable[Any], calls: Mapping[str, Call], *, target: int | str | None,
                  seed: int, cache: MapCache | None, executor: Any = None,
                  unit: Callable[..., Any] = maps_unit, unit_args: tuple[Any, ...] = ()) -> Iterable[ImageMaps]:
    """Every item's maps for every call, in the order of ``items``, through ``cache`` and ``executor``.

    The driver reads each image (digest, size; its maps are drawn on it) and looks its keys up
    in the cache; what is missing becomes one unit per image (``unit(clf, source, requests,
    target, seed, *unit_args)``, default :func:`maps_unit`) run by ``executor``
    (:class:`~blackbox_cam.jobs.executors.LocalExecutor` when None, or a Ray executor); fresh
    maps are put in the cache as they arrive, so an interrupted run resumes from them. Items
    with ``skip`` (non-image files found in folders) are not yielded: callers list them first.
    ``target``: None/``top1`` or a class index (already resolved from a label).
    """
    from .executors import Failed, ImageSource, LocalExecutor, Ready, Work
    executor = executor or LocalExecutor(clf)
    names = list(calls)

    def tasks():
        for item in items:
            if getattr(item, "skip", False):
                continue
            im = ImageMaps(item)
            try:
                im.image, im.size = item.read()
                im.digest = item.digest() if cache is not None else None
            except BlackboxCamError as e:
                im.error = str(e)
                yield im, Ready(None)
                continue
            keys = {n: cache_key(cache, im.digest, calls[n], target, seed) for n in names} if im.digest else {}
            got = {n: cache.get(keys[n]) for n in keys}
            missing = [n for n in names if got.get(n) is None]
            path = getattr(item, "path", None)
            if not missing and unit is maps_unit:
                yield (im, keys, got, missing), Ready(got)
                continue
            if path is not None:
                src = ImageSource.of(item.name, path, remote=executor.remote, image=im.image, size=im.size)
            else:  # an in-memory image
                src = ImageSource(item.name, image=im.image, size=im.size)
            reqs = tuple(MapRequest.of(calls[n]) for n in missing)
            args = (src, reqs, target, seed, *unit_args) if unit is maps_unit else \
                (src, reqs, target, seed, {n: got[n] for n in names if got.get(n) is not None}, *unit_args)
            yield (im, keys, got, missing), Work(unit, args, item.name)

    for ctx, value in executor.imap(tasks()):
        if isinstance(ctx, ImageMaps):     # the image could not be read
            yield ctx
            continue
        im, keys, got, missing = ctx
        if isinstance(value, Failed):      # the whole unit failed (e.g. its worker died 3 times)
            fresh = {n: value for n in (missing if unit is maps_unit else names)}
        elif unit is maps_unit:
            fresh = dict(zip(missing, value)) if missing else {}
        else:
            entries, im.extra = value      # (entries of the missing calls, the unit's own result)
            fresh = dict(zip(missing, entries))
        for n in names:
            entry = fresh[n] if n in fresh else got[n]
            if isinstance(entry, Failed):
                im.errors[n] = entry.error
                continue
            if n in fresh and keys:
                cache.put(keys[n], entry)
            res = result_of(clf, entry, im.image)
            res.cached = n not in fresh
            im.results[n] = (res, n in fresh)
        yield im
