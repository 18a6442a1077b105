"""``blackbox-cam``: the command line, a thin layer over the Python API.

One module per command (``explain``, ``layers``, ``compare``, ...), shared options in
:mod:`.options`, the group in :mod:`._group`. Each command parses its options, loads the model
through :class:`blackbox_cam.model.runtime.Classifier` and calls the library; method choices come from
the registry so the CLI cannot drift from the API. User errors print one line (``error: ...``)
and exit non-zero without a traceback.
"""
from __future__ import annotations

from ._group import main
from .animate import animate
from .compare import compare
from .detect import detect
from .explain import explain
from .gate import gate
from .global_ import global_
from .layers import layers
from .verify import verify

# each command registers here, one line each
for _cmd in (explain, layers, compare, gate, global_, animate, verify, detect):
    main.add_command(_cmd)

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
