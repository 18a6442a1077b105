"""Method options, declared once: name, type, default, range or choices, help text.

Every registered method lists its options as :class:`Option` objects
(:func:`blackbox_cam.methods.base.register`). The registry checks a call's options against
them before the model is asked anything, so a typo, an option that the chosen method does not
take or a value out of range is one clear :class:`~blackbox_cam.errors.BlackboxCamError`
naming what would be valid, and the CLI builds its method flags from the same declarations
(:func:`blackbox_cam.cli.options.method_options`), so names, defaults and help cannot drift.

To give a method a new option, add one ``Option(...)`` to its ``register`` call and a keyword
argument of the same name to its function; the CLI flag and the checks follow.
"""
from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import BlackboxCamError

_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Option:
    """One option of a method.

    Attributes
    ----------
    name : keyword argument of the method function (and, with ``_`` as ``-``, the CLI flag).
    type : ``int``, ``float``, ``str`` or ``bool``.
    default : value when the caller gives none; ``None`` means the method chooses (say so in
        ``help``, e.g. "default: 1/8 of the input side").
    help : one sentence for ``--help`` and the docs.
    choices : the allowed values of a ``str`` option.
    min, max : inclusive bounds of a number.
    max_side : the value may not exceed the model input's shorter side (grid cells, windows).
    flag : CLI spelling when ``--name`` would be unclear (``p`` is ``--keep-probability``).
    cli : ``False`` for API-only options (DE-CAM's ``trace``, which returns frames, not a file).
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    max_side: bool = False
    flag: str | None = None
    cli: bool = True

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise TypeError(f"option {self.name!r}: type must be one of int, float, str, bool")
        if self.default is not None:
            self.check("<declaration>", self.default)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def describe(self) -> str:
        """The allowed values in words: ``one of a, b``, ``2..input side``, ``>= 0``; ``""`` for free text."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        hi = "input side" if self.max_side and self.max is None else None if self.max is None else f"{self.max:g}"
        if self.min is not None and hi is not None:
            return f"{self.min:g}..{hi}"
        return f">= {self.min:g}" if self.min is not None else f"<= {hi}" if hi is not None else ""

    def check(self, method: str, value: Any, side: int | None = None) -> Any:
        """``value`` converted to :attr:`type`, or a one-line error naming the valid values."""
        if value is None and self.default is None:
            return None
        what = f"{self.cli_flag} {value!r}"
        if self.type is bool:
            if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
                raise BlackboxCamError(f"{what} for {method}: must be true or false")
            return bool(value)
        if self.type is str:
            if not isinstance(value, str):
                raise BlackboxCamError(f"{what} for {method}: must be text")
            if self.choices and value not in self.choices:
                close = difflib.get_close_matches(value, self.choices, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise BlackboxCamError(f"{what} is not valid for {method}: choose {self.describe()}{hint}")
            return value
        ok = isinstance(value, numbers.Integral) if self.type is int else isinstance(value, numbers.Real)
        if isinstance(value, bool) or not ok:
            raise BlackboxCamError(f"{what} for {method}: must be {'a whole number' if self.type is int else 'a number'}")
        value = self.type(value)
        hi = self.max
        if self.max_side and side is not None:
            hi = side if hi is None else min(hi, side)
        if (self.min is not None and value < self.min) or (hi is not None and value > hi):
            lo = "" if self.min is None else f"{self.min:g}"
            top = None if hi is None else f"{hi:g}" + (" (the model's input side)" if self.max_side and hi == side
                                                        else "")
            if top is None and self.max_side:
                top = "the model's input side"
            bound = f"between {lo} and {top}" if lo and top else f"at least {lo}" if lo else f"at most {top}"
            raise BlackboxCamError(f"{what} is out of range for {method}: must be {bound}")
        return value


def suggest(name: str, names: Sequence[str]) -> str:
    """``"; did you mean 'grid'?"`` for the closest of ``names``, or ``""``."""
    close = difflib.get_close_matches(name, list(names), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
