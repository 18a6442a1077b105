"""Writing results so that nothing already written is lost or left half-written.

Every file is written to a temporary name in the same folder and moved into place with
:func:`os.replace` (atomic on POSIX and Windows), so a crash or Ctrl-C leaves either the old
file or the new one, never a truncated one.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import BlackboxCamError


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


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    write_bytes(path, buf.getvalue())


def write_png(path: str | os.PathLike, image: Image.Image) -> None:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
