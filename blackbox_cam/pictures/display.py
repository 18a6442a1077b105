"""Results that show themselves: one mixin for every Python result with a main picture.

An explained image, a comparison, a gate report, a dataset's global maps and an animation each
have one picture that says what they found (the overlay, the panels, the failing overlays, the
contact sheet of global maps, the frames). Each mixes in :class:`Shows` and implements
:meth:`Shows.picture`; the mixin gives it, without any copy of the code:

* Jupyter's rich display: ``_repr_png_`` (a bare result as the last line of a cell shows its
  picture) and ``_repr_pretty_`` (its one-line :meth:`Shows.describe` as the text form);
* :meth:`Shows.plot` (the picture on matplotlib axes, titled) and :meth:`Shows.show`;
* :meth:`Shows.png` (the picture's PNG bytes).

Figures are made with matplotlib's object API (:func:`figure`) and never switch the backend, so
nothing here (or in the writers using it) turns off a notebook's inline plots, which
``matplotlib.use("Agg")`` would do. The colour bar uses :func:`colormap`, the exact colours of
:func:`blackbox_cam.pictures.render.jet`, so a plot and a written PNG agree.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from ..io.output import png_bytes

#: Pictures shown in a notebook are at least this many pixels on their shorter side (small
#: images such as 64 x 64 frames are enlarged by a whole factor, nearest neighbour) ...
MIN_SIDE = 256
#: ... and at most this many on their longer side (larger ones are shrunk), so a notebook stays small.
MAX_SIDE = 800


def display_size(picture: Image.Image, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> Image.Image:
    """``picture`` enlarged by a whole factor (nearest neighbour, pixels stay sharp) until its shorter
    side reaches ``min_side``, or shrunk (antialiased) so its longer side is at most ``max_side``."""
    w, h = picture.size
    k = min(-(-min_side // max(1, min(w, h))), max_side // max(1, w, h))
    if k > 1:
        return picture.resize((w * k, h * k), Image.NEAREST)
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        return picture.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    return picture


def stack(pictures: list[Image.Image], gap: int = 8) -> Image.Image:
    """Pictures one under the other on white, left-aligned (e.g. a comparison's panels)."""
    if not pictures:
        raise ValueError("nothing to stack")
    width = max(p.width for p in pictures)
    canvas = Image.new("RGB", (width, sum(p.height for p in pictures) + gap * (len(pictures) - 1)), "white")
    y = 0
    for p in pictures:
        canvas.paste(p.convert("RGB"), (0, y))
        y += p.height + gap
    return canvas


def grid(pictures: list[Image.Image], cols: int = 4, title: str | None = None, gap: int = 8) -> Image.Image:
    """Pictures in rows of ``cols`` on white (each cell as large as the largest picture), with a
    ``title`` wrapped above them (e.g. a gate's failing overlays under its verdict)."""
    import textwrap

    from PIL import ImageDraw

    from .render import _font

    if not pictures:
        raise ValueError("nothing to lay out")
    cols = max(1, min(cols, len(pictures)))
    rows = -(-len(pictures) // cols)
    cw, ch = max(p.width for p in pictures), max(p.height for p in pictures)
    width = cols * cw + (cols + 1) * gap
    font = _font(14)
    lines = textwrap.wrap(title, max(20, width // 8)) if title else []
    top = (len(lines) * 18 + gap) if lines else 0
    canvas = Image.new("RGB", (width, top + rows * (ch + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((gap, gap // 2 + 18 * i), line, fill="black", font=font)
    for k, p in enumerate(pictures):
        r, c = divmod(k, cols)
        canvas.paste(p.convert("RGB"), (gap + c * (cw + gap), top + gap + r * (ch + gap)))
    return canvas


def colormap():
    """The jet colour map of :func:`blackbox_cam.pictures.render.jet` as a matplotlib colormap (256 steps)."""
    from matplotlib.colors import ListedColormap

    from .render import jet

    return ListedColormap(jet(np.linspace(0.0, 1.0, 256)).astype(np.float64) / 255.0, name="blackbox_cam_jet")


def figure(width: float, height: float, **kw: Any):
    """A matplotlib ``Figure`` made without pyplot: rendering it never changes the backend."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), **kw)


def figure_png(fig, dpi: int = 100) -> bytes:
    """A figure's PNG bytes (no metadata, so equal figures give equal bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def add_colorbar(ax, label: str = "saliency"):
    """A 0..1 colour bar in :func:`colormap`'s colours beside ``ax``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = ax.figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormap()), ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label)
    return bar


def new_axes(ax, width: float, height: float):
    """``ax``, or the axes of a new pyplot figure ``width x height`` inches (so ``plt.show()`` and a
    notebook's inline backend show it)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))[1]


class Shows:
    """Mixin: a result whose main picture is :meth:`picture` displays itself (module docstring)."""

    def picture(self) -> Image.Image | None:
        """The result's main picture (None when it has none, e.g. a gate with no failing image)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line saying what the result found (the text form in a notebook)."""
        return type(self).__name__

    def png(self) -> bytes:
        """The picture as PNG bytes."""
        pic = self.picture()
        if pic is None:
            raise ValueError(f"{type(self).__name__} has no picture: {self.describe()}")
        return png_bytes(pic, optimize=True)

    def _repr_png_(self) -> bytes | None:
        pic = self.picture()
        return None if pic is None else png_bytes(display_size(pic), optimize=True)

    def _repr_pretty_(self, p, cycle: bool) -> None:
        p.text(self.describe())

    def plot(self, ax=None, *, title: bool = True):
        """The picture on matplotlib axes (a new figure when ``ax`` is None); returns the axes."""
        pic = self.picture()
        if pic is None:
            raise ValueError(f"{type(self).__name__} has no picture: {self.describe()}")
        ax = new_axes(ax, min(14.0, pic.width / 80 + 0.5), min(14.0, pic.height / 80 + 0.5))
        ax.imshow(np.asarray(pic))
        ax.set_axis_off()
        if title:
            ax.set_title(self.describe(), fontsize=9, wrap=True)
        return ax

    def show(self) -> None:
        """Draw :meth:`plot` and show it (inline in a notebook, a window elsewhere)."""
        import matplotlib.pyplot as plt

        self.plot()
        plt.show()


class Gif:
    """An animated GIF that shows itself in a notebook (an ``<img>`` with the bytes inline)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def save(self, path) -> None:
        from ..io.output import write_bytes

        write_bytes(path, self.data)

    def _repr_html_(self) -> str:
        return f'<img src="data:image/gif;base64,{base64.b64encode(self.data).decode()}"/>'

    def __repr__(self) -> str:
        return f"Gif({len(self.data)} bytes)"
