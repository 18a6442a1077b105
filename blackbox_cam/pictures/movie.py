"""Pictures of an animation: captioned frames, animated GIF (Pillow), MP4 (PyAV, optional) and a
contact sheet of all frames.

Nothing here computes a map: it draws :class:`blackbox_cam.jobs.animate.job.Animation` frames. GIF frame
durations are whole hundredths of a second (the format's unit), so ``fps`` is rounded to the
nearest duration the format can hold (:func:`gif_duration_ms`).
"""
from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
from PIL import Image, ImageDraw

from ..errors import BlackboxCamError
from ..io.images import to_uint8
from .render import _font, overlay

#: frames are drawn at least this high (small model inputs are scaled up) and at most this high.
MIN_HEIGHT, MAX_HEIGHT = 256, 480
MP4_HINT = 'MP4 needs PyAV (FFmpeg bindings): pip install "blackbox-cam[video]" (or pip install av), or use --format gif'


def short_name(name: str) -> str:
    """A tensor name without the exporter's ``_output_0`` suffix and leading slash."""
    n = name[:-len("_output_0")] if name.endswith("_output_0") else name
    return n.lstrip("/") or name


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int, keep_end: bool = True) -> str:
    """``text`` cut with an ellipsis so that it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength("..." + text, font=font) > width:
        text = text[1:] if keep_end else text[:-1]
    return "..." + text if keep_end else text + "..."


def _display_size(h: int, w: int) -> tuple[int, int]:
    scale = MIN_HEIGHT / h if h < MIN_HEIGHT else (MAX_HEIGHT / h if h > MAX_HEIGHT else 1.0)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _masked(image: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The image dimmed where the mask is low (what a DE-CAM candidate keeps)."""
    m = np.clip(np.asarray(mask, np.float32), 0, 1)[..., None]
    return Image.fromarray(to_uint8(image * (0.2 + 0.8 * m)))


def frame_lines(anim, frame, norm: str) -> list[str]:
    """The caption of one frame: what is explained, which frame, and its score."""
    n = len(anim.frames)
    road = f"ROAD {frame.road.combined:+.3f}" if frame.road is not None else "ROAD -"
    head = f"{anim.method}: {anim.label} ({anim.score:.3f})"
    if anim.kind == "search":
        i = frame.info
        return [head, f"generation {i['generation']} ({frame.index}/{n}), {i['queries']} queries",
                f"best fitness {i['best_fitness']:+.4f}  {road}"]
    extra = ""
    if norm == "global" and anim.global_range is not None and frame.raw is not None:
        lo, hi = anim.global_range
        extra = f"  peak {(float(frame.raw.max()) - lo) / (hi - lo) if hi > lo else 0.0:.2f}"
    return [head, frame.name, f"{frame.index}/{n}  {frame.shape_text()}  {road}  [{norm}{extra}]"]


def frame_picture(anim, frame, norm: str = "layer") -> Image.Image:
    """One captioned frame: the map over the image (and, for a search, the best mask beside it)."""
    sal = frame.global_map if norm == "global" and frame.global_map is not None else frame.layer_map
    h, w = _display_size(*anim.image.shape[:2])
    tiles = [overlay(anim.image, sal).resize((w, h), Image.BILINEAR)]
    if frame.mask is not None:
        tiles.append(_masked(anim.image, frame.mask).resize((w, h), Image.BILINEAR))
    font = _font(14)
    line_h = 18
    lines = frame_lines(anim, frame, norm)
    width = max(360, sum(t.width for t in tiles) + 4 * (len(tiles) - 1))
    canvas = Image.new("RGB", (width, h + 6 + line_h * len(lines)), "white")
    x = (width - sum(t.width for t in tiles) - 4 * (len(tiles) - 1)) // 2
    for t in tiles:
        canvas.paste(t, (x, 0))
        x += t.width + 4
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((4, h + 3 + k * line_h), _fit(draw, line, font, width - 8), fill="black", font=font)
    return canvas


def pictures(anim, norm: str = "layer") -> list[Image.Image]:
    return [frame_picture(anim, f, norm) for f in anim.frames]


def gif_duration_ms(fps: float) -> int:
    """Milliseconds per frame for ``fps``, rounded to the GIF format's 10 ms unit (>= 20 ms,
    since browsers slow shorter frames down)."""
    if not fps > 0:
        raise BlackboxCamError(f"--fps must be positive, got {fps}")
    return 10 * max(2, round(100.0 / fps))


def gif_bytes(images: list[Image.Image], fps: float) -> bytes:
    """An animated GIF that loops forever, every frame shown for :func:`gif_duration_ms`.

    Each frame gets its own 256-colour palette from Pillow's fast octree quantiser (Pillow's
    default median cut takes ~1 s per frame, 100x longer, for no visible difference here).
    """
    if not images:
        raise BlackboxCamError("no frames to animate")
    images = [im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE) for im in images]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=gif_duration_ms(fps),
                   loop=0, disposal=1)
    return buf.getvalue()


def have_mp4() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def mp4_bytes(images: list[Image.Image], fps: float) -> bytes:
    """H.264 (or MPEG-4 part 2 where PyAV's FFmpeg lacks it) in an MP4 container, yuv420p,
    frames padded with white to even sizes. Needs the optional ``av`` package."""
    try:
        import av
    except ImportError:
        raise BlackboxCamError(MP4_HINT) from None
    if not images:
        raise BlackboxCamError("no frames to animate")
    if not fps > 0:
        raise BlackboxCamError(f"--fps must be positive, got {fps}")
    w = max(i.width for i in images)
    h = max(i.height for i in images)
    w, h = w + w % 2, h + h % 2
    codec = "libx264"
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        codec = "mpeg4"
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for im in images:
            canvas = Image.new("RGB", (w, h), "white")
            canvas.paste(im, (0, 0))
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def contact_sheet(anim, norm: str = "layer", *, tile: int = 160, cols: int | None = None,
                  title: str | None = None) -> Image.Image:
    """All frames in a grid (row-major in animation order), each with its index, short name and
    ROAD score: the animation on one page, for reports."""
    n = len(anim.frames)
    cols = cols or max(1, min(n, math.ceil(math.sqrt(n * 1.6))))
    rows = math.ceil(n / cols)
    h0, w0 = anim.image.shape[:2]
    th, tw = tile, max(1, round(w0 * tile / h0))
    font, small = _font(15), _font(11)
    cap_h, pad, top = 30, 6, 28
    sheet = Image.new("RGB", (pad + cols * (tw + pad), top + rows * (th + cap_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    yb = anim.ybroad
    summary = f"  ybROAD max {yb['max']:+.3f} (frame {yb['argmax']}), mean {yb['mean']:+.3f}" if yb else ""
    head = title or f"{anim.method}: {anim.label} ({anim.score:.3f}), {n} frames, {norm} normalisation{summary}"
    draw.text((pad, 6), _fit(draw, head, font, sheet.width - 2 * pad, keep_end=False), fill="black", font=font)
    for k, f in enumerate(anim.frames):
        r, c = divmod(k, cols)
        x, y = pad + c * (tw + pad), top + r * (th + cap_h + pad)
        sal = f.global_map if norm == "global" and f.global_map is not None else f.layer_map
        sheet.paste(overlay(anim.image, sal).resize((tw, th), Image.BILINEAR), (x, y))
        name = short_name(f.name) if anim.kind == "layers" else f"gen {f.info['generation']}, {f.info['queries']} q"
        road = f"ROAD {f.road.combined:+.3f}" if f.road is not None else ""
        draw.text((x, y + th + 1), _fit(draw, f"{f.index} {name}", small, tw), fill="black", font=small)
        draw.text((x, y + th + 15), f"{f.shape_text()} {road}".strip(), fill="black", font=small)
    return sheet


