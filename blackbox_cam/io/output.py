"""Writing results so that nothing already written is lost, half-written or unreadable.

* Every file is written to a temporary name in the same folder and moved into place with
  :func:`os.replace` (atomic on POSIX and Windows), so a crash or Ctrl-C leaves either the old
  file or the new one, never a truncated one; the temporary file is removed on any exception.
* Files get the mode a plain ``open()`` would give them (``0666`` minus the umask), not the
  ``0600`` of :func:`tempfile.mkstemp`, so CI artefact steps, web servers and colleagues can
  read the reports.
* JSON is strict (RFC 8259): a NaN or infinity becomes ``null`` and ``allow_nan=False`` makes
  any slip an error here rather than in the reader's parser.
* :class:`RecordBook` keeps a folder's ``explain.json`` as a list of records merged by
  ``(image, method)`` across runs, under a file lock (the ``filelock`` package), so a second
  run adds to the first and two concurrent runs lose nothing.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import BlackboxCamError


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written there."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as e:
        raise BlackboxCamError(f"{p}: output directory cannot be written ({e.strerror or e}); "
                               "choose another --out") from None
    return p


def file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: ``0o666`` minus the process umask."""
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it...
    os.umask(mask)          # ...and put it back at once
    return 0o666 & ~mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, with the normal file mode (see :func:`file_mode`)."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), file_mode())
        if not hasattr(os, "fchmod"):  # Windows: only the read-only bit exists
            os.chmod(tmp, file_mode())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def png_bytes(image: Image.Image, **options: Any) -> bytes:
    """PNG bytes of ``image``; ``options`` go to Pillow's PNG writer (``optimize``, ``compress_level``)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", **options)
    return buf.getvalue()


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    write_bytes(path, npy_bytes(array))


def write_png(path: str | os.PathLike, image: Image.Image) -> None:
    write_bytes(path, png_bytes(image))


def json_text(obj: Any) -> str:
    """Strict JSON: numpy values converted, NaN/inf as ``null``; never emits ``NaN``."""
    return json.dumps(strict_json(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, json_text(obj).encode())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def strict_json(o: Any) -> Any:
    """``o`` with numpy scalars/arrays as Python values, paths as strings, non-finite floats as None."""
    if isinstance(o, Mapping):
        return {str(k): strict_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [strict_json(v) for v in o]
    if isinstance(o, np.ndarray):
        return strict_json(o.tolist())
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, Path):
        return str(o)
    if o is None or isinstance(o, (int, str)):
        return o
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise :class:`KeyboardInterrupt`.

    Used around "write the files and list them", so an interrupt never leaves a map that no
    record lists or a record that names a missing file. Only the main thread can hold signals;
    elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught:
        raise KeyboardInterrupt


def record_key(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    """What identifies a record in explain.json: the image path as given (normalised), the method
    and, for a detector's map, which detection (:func:`record_tag`)."""
    return os.path.normpath(str(rec.get("image", ""))), str(rec.get("method", "")), record_tag(rec)


def record_tag(rec: Mapping[str, Any]) -> str:
    """``""`` for a classifier's record; ``"_det<K>"`` for the map of detection ``K`` and ``"_box"``
    for a ``--box`` the model did not report (a detector's maps: several per image and method)."""
    if rec.get("detection") is not None:
        return f"_det{int(rec['detection'])}"
    return "_box" if rec.get("box") is not None and "reported" in rec else ""




def unique_stem(image: str, stem: str, records: Sequence[Mapping[str, Any]]) -> str:
    """The file stem for ``image``'s maps that no other image's record in ``records`` uses.

    The rule (deterministic, stable across runs): an image keeps the stem its earlier records
    used; otherwise the file's own stem if no other image has claimed it, else ``stem-2``,
    ``stem-3``, ... in the order images are committed. So ``a/cat.png`` then ``b/cat.png`` give
    ``cat_decam.npy`` and ``cat-2_decam.npy``; ``p3.png`` and ``p3.jpg`` likewise.
    (:class:`RecordBook` keeps the same rule with an index instead of a scan.)
    """
    me = os.path.normpath(image)
    taken: set[str] = set()
    for r in records:
        s = _record_stem(r)
        if not s:
            continue
        if os.path.normpath(str(r.get("image", ""))) == me:
            return s
        taken.add(s)
    return _free_stem(stem, taken)


class RecordBook:
    """A folder's ``explain.json``: records merged by (image, method), written under a file lock.

    Each :meth:`commit` takes the lock, catches up with what other runs added, chooses the
    output stem (:func:`unique_stem`'s rule), writes the record's files and appends the record
    to a journal beside the file (``.explain.json.journal``, one JSON record per line); Ctrl-C
    is held meanwhile. The journal is folded into ``explain.json`` (rewritten atomically, so the
    file on disk is always strict JSON) in batches: once it holds a quarter as many records as
    the file (at least 64), after a minute, and on :meth:`close` (also at exit, and when the
    ``with`` block ends, Ctrl-C included). So a run of ``n`` records costs ``O(n)`` writes,
    not the ``O(n^2)`` of rewriting the whole list per record. A run killed outright leaves
    its last records in the journal; the next :class:`RecordBook` on the folder folds them in,
    and every reader through :meth:`records` sees them at once.
    """

    FOLD_MIN = 64          # records in the journal before a fold is considered
    FOLD_SECONDS = 60.0    # ... or seconds since the last fold

    def __init__(self, path: str | os.PathLike) -> None:
        from filelock import FileLock

        self.path = Path(path)
        self.journal = self.path.with_name(f".{self.path.name}.journal")
        self._lock = FileLock(str(self.path.with_name(f".{self.path.name}.lock")))
        self._records: list[dict] = []
        self._where: dict[tuple[str, str, str], int] = {}
        self._stem_of: dict[str, str] = {}   # image (normalised) -> the stem its records use
        self._taken: set[str] = set()
        self._seen: tuple | None = None      # explain.json's stat when last read
        self._offset = 0                     # journal bytes already applied
        self._pending = 0                    # records in the journal, not yet in explain.json
        self._folded_at = time.monotonic()
        with self._lock:
            self._sync()  # an unreadable explain.json is refused before any work is done
            if self._pending:
                self._fold()  # a killed run's journal
        self._finalizer = weakref.finalize(self, RecordBook._close_at_exit, weakref.ref(self))

    # -- reading ---------------------------------------------------------------------------------
    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BlackboxCamError(f"{self.path}: exists but is not readable JSON ({e}); move it away or "
                                   "choose another --out") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BlackboxCamError(f"{self.path}: exists but is not a list of records; move it away or "
                                   "choose another --out")
        return data

    def _stat(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _apply(self, rec: dict) -> None:
        k = record_key(rec)
        if k in self._where:
            self._records[self._where[k]] = rec
        else:
            self._where[k] = len(self._records)
            self._records.append(rec)
        s = _record_stem(rec)
        if s:
            self._stem_of.setdefault(k[0], s)
            self._taken.add(s)

    def _sync(self) -> None:
        """Catch up (under the lock) with explain.json and the journal as other runs left them."""
        seen = self._stat()
        size = self.journal.stat().st_size if self.journal.exists() else 0
        if seen != self._seen or size < self._offset:
            self._records, self._where, self._stem_of, self._taken = [], {}, {}, set()
            for rec in self._read():
                self._apply(rec)
            self._seen, self._offset, self._pending = seen, 0, 0
        if size > self._offset:
            with open(self.journal, "rb") as f:
                f.seek(self._offset)
                tail = f.read()
            end = tail.rfind(b"\n") + 1          # a line cut by a killed writer is dropped
            for line in tail[:end].splitlines():
                if line.strip():
                    self._apply(json.loads(line))
                    self._pending += 1
            self._offset += end
            if end < len(tail):
                os.truncate(self.journal, self._offset)

    def records(self) -> list[dict]:
        """Every record, explain.json's and the journal's merged."""
        with self._lock:
            self._sync()
            return list(self._records)

    # -- writing ---------------------------------------------------------------------------------
    def _fold(self) -> None:
        write_json(self.path, self._records)
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()  # everything is in explain.json now; no empty file is left behind
        self._seen, self._offset, self._pending = self._stat(), 0, 0
        self._folded_at = time.monotonic()

    def commit(self, record: dict, files: Mapping[str, bytes] | None = None, *,
               stem: str | None = None) -> dict:
        """Add ``record``; ``files`` maps a suffix (``"npy"``, ``"png"``) to bytes written as
        ``<stem>_<method>.<suffix>`` beside explain.json, and named in the record under that key;
        a suffix starting with ``_`` (``"_se.npy"``) is appended as is (``<stem>_<method>_se.npy``)
        and recorded under its name (``"se"``)."""
        with deferred_interrupt(), self._lock:
            self._sync()
            if files:
                image = os.path.normpath(str(record["image"]))
                s = self._stem_of.get(image) or _free_stem(stem or Path(str(record["image"])).stem, self._taken)
                record["stem"] = s
                for suffix, data in files.items():
                    # "npy" -> <stem>_<method>.npy, recorded as "npy"; "_se.npy" -> <stem>_<method>_se.npy,
                    # recorded as "se"
                    tail = suffix if suffix.startswith("_") else f".{suffix}"
                    name = f"{s}_{record['method']}{record_tag(record)}{tail}"
                    write_bytes(self.path.parent / name, data)
                    record[suffix.lstrip("_").split(".")[0] if suffix.startswith("_") else suffix] = name
            line = (json.dumps(strict_json(record), allow_nan=False) + "\n").encode()
            with open(self.journal, "ab") as f:
                f.write(line)
            self._offset += len(line)
            self._pending += 1
            self._apply(record)
            if self._pending >= max(self.FOLD_MIN, len(self._records) // 4) or \
                    time.monotonic() - self._folded_at > self.FOLD_SECONDS:
                self._fold()
        return record

    def close(self) -> None:
        """Fold the journal into explain.json (idempotent)."""
        with deferred_interrupt(), self._lock:
            self._sync()
            if self._pending:
                self._fold()

    def __enter__(self) -> RecordBook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _close_at_exit(ref: weakref.ref) -> None:
        book = ref()
        if book is not None:
            with contextlib.suppress(Exception):
                book.close()


def _record_stem(rec: Mapping[str, Any]) -> str | None:
    """The stem a record's files use (records written before stems were recorded: from ``npy``)."""
    s, npy, m = rec.get("stem"), str(rec.get("npy") or ""), str(rec.get("method", ""))
    if not s and npy.endswith(f"_{m}.npy"):
        s = npy[: -len(f"_{m}.npy")]
    return str(s) if s else None


def _free_stem(stem: str, taken: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ... : the first that no other image uses."""
    if stem not in taken:
        return stem
    n = 2
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"
