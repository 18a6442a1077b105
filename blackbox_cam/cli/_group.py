"""The ``blackbox-cam`` command group and helpers shared by its commands."""
from __future__ import annotations

import sys
from typing import Any

import click

from .._version import __version__
from ..errors import BlackboxCamError
from ..methods import METHODS


#: Exit codes: 1 = some images failed (the rest were written), 2 = bad input, nothing done,
#: 130 = interrupted by Ctrl-C (128 + SIGINT, the shell convention; what was committed stays).
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class _Group(click.Group):
    """Turns :class:`BlackboxCamError` and click's usage errors into one line on stderr, exit 2;
    Ctrl-C into exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BlackboxCamError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(EXIT_USAGE)
        except click.UsageError as e:  # a mistyped flag or value: one line and where to look
            where = e.ctx.command_path if e.ctx is not None else ctx.command_path
            click.echo(f"error: {e.format_message()} (see `{where} --help`)", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:  # click would print "Aborted!" and exit 1, like a failed image
            click.echo("interrupted: results committed so far are kept", err=True)
            ctx.exit(EXIT_INTERRUPTED)


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
