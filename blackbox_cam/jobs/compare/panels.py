"""The panel of one compared image: the image, then each method's overlay captioned with its scores.

Drawn for the report's ``panels/`` (:mod:`.report`) and for a
:class:`~.job.CompareResult` shown in a notebook; it reads the results it is given and imports
neither, so the job and the report can both use it.
"""
from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

from ...io.images import to_uint8
from ...pictures.render import overlay, panel


def make_panel(ir: Any, result: Any) -> Image.Image:
    """The image (with its box, if any), then each method's overlay captioned with its scores
    (``ir`` an :class:`~.job.ImageResult`, ``result`` its :class:`~.job.CompareResult`)."""
    base = Image.fromarray(to_uint8(ir.image))
    if ir.box is not None:
        _draw_box(base, ir.box, ir.image.shape[:2])
    what = (f"detection {ir.detection}: {_short(ir.label)}" if ir.detection is not None
            else f"target {ir.target}: {_short(ir.label)}")
    tiles, caps = [base], [f"{ir.name}\n{what}\n"]
    ref = result.reference
    for m in result.methods:
        if m not in ir.maps:
            continue
        row = next(r for r in ir.rows_of(result.rows) if r["method"] == m)
        tile = overlay(ir.image, ir.maps[m])
        if ir.detection is not None:  # a detection's maps each show its box
            _draw_box(tile, ir.box, ir.image.shape[:2])
        tiles.append(tile)
        lines = [f"{m}  ({row['queries']} q, {row['seconds']:.1f} s)",
                 f"del {row['deletion_auc']:.3f}  ins {row['insertion_auc']:.3f}"]
        if ref is not None and m != ref and f"spearman_vs_{ref}" in row:
            lines.append(f"vs {ref}: rho {row[f'spearman_vs_{ref}']:.2f} IoU {row[f'iou_vs_{ref}']:.2f}")
        elif m == ref:
            lines.append("(reference)")
        caps.append("\n".join(lines))
    n_lines = max(c.count("\n") + 1 for c in caps)
    caps = [c + "\n" * (n_lines - c.count("\n") - 1) for c in caps]
    return panel(tiles, caps, tile=256)


def _draw_box(tile: Image.Image, box: Any, image_hw: tuple[int, int]) -> None:
    """Draw ``box`` (pixels of the ``image_hw`` image) on ``tile`` in green, in place."""
    d = ImageDraw.Draw(tile)
    kx, ky = tile.size[0] / image_hw[1], tile.size[1] / image_hw[0]
    lw = max(1, round(max(tile.size) / 128))          # about 2 px once the tile is scaled to 256
    x0, y0, x1, y1 = box
    d.rectangle([x0 * kx, y0 * ky, x1 * kx - 1, y1 * ky - 1], outline=(0, 255, 0), width=lw)


def _short(label: str | None, n: int = 28) -> str:
    label = label or ""
    return label if len(label) <= n else label[: n - 1] + "..."
