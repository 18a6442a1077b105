"""``blackbox-cam layers``: the tensors a white-box method can explain at."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--all", "show_all", is_flag=True,
              help="Also list casts and shape plumbing (the same values under another name) and "
                   "tensors that are not maps (a transformer's attention internals, token maps inside modules).")
@click.option("--tokens", default="auto", show_default=True, metavar="H,W[,EXTRA]",
              help="Patch grid of a transformer's token maps when the graph does not show it (EXTRA tokens "
                   "before the grid, e.g. 14,14,1), or auto.")
def layers(model: Path, show_all: bool, tokens: str) -> None:
    """List MODEL's feature maps for the white-box methods: name, op, shape, layout, height x
    width, role and exporter scope; * marks the default (the map the global pooling reads; for a
    detector, the neck map of each level of its head, which --layer auto takes per detection)."""
    from ..errors import BlackboxCamError
    from ..gradients import mark_tokens
    from ..methods.gradcam import head_levels, list_layers, token_facts
    from ..model.runtime import load_onnx

    onnx_model = load_onnx(model)
    every = list_layers(onnx_model)
    # -- issue 19 hook: a transformer's token maps (a module's output each) and attention
    facts = token_facts(onnx_model, tokens)
    if tokens != "auto":
        every = mark_tokens(every, facts)
    last_of_scope = {r.scope: r.name for r in every if r.role == "tokens"}
    # -- issue 27: a detector's levels, and the neck map each level's candidates come from
    head, levels = head_levels(onnx_model)
    necks = {lv.neck: lv for lv in levels if lv.neck}
    rows = every if show_all else [r for r in every if r.is_default
                                   or (r.layout and not r.plumbing and r.role != "tokens")
                                   or (r.role == "tokens" and last_of_scope[r.scope] == r.name)]
    if not rows:
        more = (f"; `--all` lists its {len(every)} other float tensors" if every and not show_all else "")
        raise BlackboxCamError(f"{model}: no feature map ([N, C, H, W] or [N, H, W, C]) among its intermediate "
                               f"tensors, so the white-box methods have no layer to explain at{more}; use a "
                               "black-box method (decam, rise, occlusion)")
    for r in rows:
        shape = "x".join("?" if d is None else str(d) for d in (r.shape or ()))
        hw = "x".join("?" if d is None else str(d) for d in r.hw) if r.hw else "-"
        role = (facts.maps[r.name].label() if r.name in facts.maps else
                f"neck {necks[r.name].name}" if r.name in necks else
                r.role + (" (not a feature map)" if r.role.startswith("attention") else "")) + (
                " (copy)" if r.plumbing else "")
        click.echo(f"{'*' if r.is_default or r.name in necks else ' '} {r.name}\t{r.op_type}\t{shape}\t{r.layout or '-'}\t{hw}\t"
                   f"{role}\t{r.scope or ''}")
    hidden = len(every) - len(rows)
    if hidden:
        click.echo(f"({hidden} more: casts, shape plumbing and tensors that are not maps; --all lists them)")
    if facts.grid is not None:
        source = "the graph" if facts.source == "graph" else "--tokens"
        attention = (f"{len(facts.attention)} attention maps (-m rollout, attention-grad)" if facts.attention else
                     "no global attention over the tokens (rollout and attention-grad do not apply)")
        click.echo(f"# transformer: {facts.grid.label()} (from {source}), {attention}")
        if facts.why:
            click.echo(f"# default {facts.default}: {facts.why}")
    try:  # what the model reader decides (classifier or detector) and why
        from ..model.signature import read_model
        sig = read_model(onnx_model, source=str(model))
        click.echo(f"# task: {sig.task}: {sig.task_reason}")
    except BlackboxCamError as e:
        click.echo(f"# task: not read ({e})")
    if head is not None:
        if levels and all(lv.neck for lv in levels):
            click.echo(f"# detector ({head.kind}, output {head.outputs[0]!r}): its candidates come from "
                       f"{len(levels)} levels; --layer auto explains a detection at the neck map of its "
                       "candidate's level (* above), the map every head branch of that level reads:")
            for lv in levels:
                click.echo(f"#   {lv.describe()}, stride {lv.stride:g}: {lv.neck}")
        else:
            click.echo(f"# detector ({head.kind}): no grid levels of its head are plain in the graph (a query head, "
                       "as DETR's, has none), so --layer auto has no map for the white-box methods; pick one with "
                       "--layer", err=True)
    elif not any(r.is_default for r in every):
        maps = [r.name for r in every if r.role == "map" and not r.plumbing][-3:]
        click.echo("no default layer: no global pooling or flatten head reads a feature map; pick one with "
                   f"--layer, e.g. {', '.join(maps)}", err=True)
