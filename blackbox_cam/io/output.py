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


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
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


def record_key(rec: Mapping[str, Any]) -> tuple[str, str]:
    """What identifies a record in explain.json: the image path as given (normalised) and the method."""
    return os.path.normpath(str(rec.get("image", ""))), str(rec.get("method", ""))


def merge_records(old: Sequence[dict], new: Sequence[dict]) -> list[dict]:
    """``old`` with every record of ``new`` replacing the one with the same :func:`record_key`
    (in place, so the order stays stable), and records with a new key appended."""
    out = list(old)
    where = {record_key(r): i for i, r in enumerate(out)}
    for r in new:
        k = record_key(r)
        if k in where:
            out[where[k]] = r
        else:
            where[k] = len(out)
            out.append(r)
    return out


def unique_stem(image: str, stem: str, records: Sequence[Mapping[str, Any]]) -> str:
    """The file stem for ``image``'s maps that no other image's record in ``records`` uses.

    The rule (deterministic, stable across runs): an image keeps the stem its earlier records
    used; otherwise the file's own stem if no other image has claimed it, else ``stem-2``,
    ``stem-3``, ... in the order images are committed. So ``a/cat.png`` then ``b/cat.png`` give
    ``cat_decam.npy`` and ``cat-2_decam.npy``; ``p3.png`` and ``p3.jpg`` likewise.
    """
    me = os.path.normpath(image)
    taken: set[str] = set()
    for r in records:
        s = r.get("stem")
        npy, m = str(r.get("npy") or ""), str(r.get("method", ""))
        if not s and npy.endswith(f"_{m}.npy"):  # a record written before stems were recorded
            s = npy[: -len(f"_{m}.npy")]
        if not s:
            continue
        if os.path.normpath(str(r.get("image", ""))) == me:
            return str(s)
        taken.add(str(s))
    if stem not in taken:
        return stem
    n = 2
    while f"{stem}-{n}" in taken:
        n += 1
    return f"{stem}-{n}"


class RecordBook:
    """A folder's ``explain.json``: records merged by (image, method), written under a file lock.

    Each :meth:`commit` takes the lock, rereads the file (another run may have added records),
    chooses the output stem (:func:`unique_stem`), writes the record's files and the merged
    list, and releases the lock; Ctrl-C is held meanwhile, so files and records never disagree.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from filelock import FileLock

        self.path = Path(path)
        self._lock = FileLock(str(self.path.with_name(f".{self.path.name}.lock")))
        with self._lock:
            self._read()  # an unreadable explain.json is refused before any work is done

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

    def records(self) -> list[dict]:
        with self._lock:
            return self._read()

    def commit(self, record: dict, files: Mapping[str, bytes] | None = None, *,
               stem: str | None = None) -> dict:
        """Add ``record``; ``files`` maps a suffix (``"npy"``, ``"png"``) to bytes written as
        ``<stem>_<method>.<suffix>`` beside explain.json, and named in the record under that key."""
        with deferred_interrupt(), self._lock:
            current = self._read()
            if files:
                s = unique_stem(str(record["image"]), stem or Path(str(record["image"])).stem,
                                current)
                record["stem"] = s
                for suffix, data in files.items():
                    name = f"{s}_{record['method']}.{suffix}"
                    write_bytes(self.path.parent / name, data)
                    record[suffix] = name
            write_json(self.path, merge_records(current, [record]))
        return record
