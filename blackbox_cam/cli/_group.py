"""The ``blackbox-cam`` command group and helpers shared by its commands."""
from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from ..errors import BlackboxCamError
from ..methods import METHODS


class _Group(click.Group):
    """Turns :class:`BlackboxCamError` into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BlackboxCamError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="blackbox-cam")
def main() -> None:
    """Explain what an ONNX image classifier looks at, from the .onnx file alone.

    \b
    Black-box methods (model outputs only):  decam, rise, occlusion
    White-box methods (gradients from the ONNX graph): gradcam, gradcam++, hirescam, xgradcam, layercam
    \b
    Example:
      blackbox-cam explain models/efficientnet_lite0.onnx models/images/chelsea.png --out out/
    Preprocessing is read from a sidecar <model>.json next to the model; flags override it.
    """


def method_list(value: str) -> list[str]:
    """Parse ``-m a,b`` into registered method names (click error listing the valid ones)."""
    names = [m.strip() for m in value.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise click.BadParameter(f"{', '.join(bad) or value!r} not a method; choose from {', '.join(METHODS)} "
                                 "(comma-separated for several)")
    return names


def progress(total: int | None, desc: str):
    """A tqdm bar on stderr, silent when stderr is not a terminal."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="q", leave=False, disable=None, file=sys.stderr)
