"""The ``blackbox-cam`` command group and helpers shared by its commands."""
from __future__ import annotations

import sys
from typing import Any

import click

from .. import __version__
from ..errors import BlackboxCamError
from ..methods import METHODS


class _Group(click.Group):
    """Turns :class:`BlackboxCamError` and click's usage errors into one line on stderr, exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BlackboxCamError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except click.UsageError as e:  # a mistyped flag or value: one line and where to look
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            click.echo(f"error: {e.format_message()} (see `{where} --help`)", err=True)
            ctx.exit(2)


def _help() -> str:
    """The group's help, listing the registered methods (so it cannot drift from the registry)."""
    black = ", ".join(n for n, s in METHODS.items() if not s.whitebox)
    white = ", ".join(n for n, s in METHODS.items() if s.whitebox)
    return ("Explain what an ONNX image classifier looks at, from the .onnx file alone.\n\n"
            f"\b\nBlack-box methods (model outputs only): {black}\n"
            f"White-box methods (gradients from the ONNX graph): {white}\n\n"
            "\b\nExample:\n  blackbox-cam explain models/efficientnet_lite0.onnx models/images/chelsea.png --out out/\n\n"
            "Preprocessing is read from a sidecar <model>.json next to the model; flags override it.")


@click.group(cls=_Group, help=_help(), context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="blackbox-cam")
def main() -> None:
    pass


def progress(total: int | None, desc: str):
    """A tqdm bar on stderr, silent when stderr is not a terminal."""
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="q", leave=False, disable=None, file=sys.stderr)
