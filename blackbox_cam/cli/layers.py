"""``blackbox-cam layers``: the tensors a white-box method can explain at."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--all", "show_all", is_flag=True, help="List every float intermediate tensor, not only 4-D maps.")
def layers(model: Path, show_all: bool) -> None:
    """List MODEL's candidate layers for the white-box methods; * marks the default."""
    from ..errors import BlackboxCamError
    from ..methods.gradcam import list_layers
    from ..model.runtime import load_onnx

    every = list_layers(load_onnx(model))
    rows = every if show_all else [r for r in every if r.shape is not None and len(r.shape) == 4]
    if not rows:
        more = (f"; `--all` lists its {len(every)} other float tensors" if every and not show_all else "")
        raise BlackboxCamError(f"{model}: no {'float' if show_all else '4-D (N, C, H, W)'} intermediate tensor, so "
                               f"the white-box methods have no layer to explain at{more}; use a black-box "
                               "method (decam, rise, occlusion)")
    for r in rows:
        shape = "x".join("?" if d is None else str(d) for d in (r.shape or ()))
        click.echo(f"{'*' if r.is_default else ' '} {r.name}\t{r.op_type}\t{shape}\t{r.scope or ''}")


