"""Decimal arithmetic and display that do not depend on the calling thread. Pure.

Two rules keep hostile or odd values from doing harm:

- Every decimal the library accepts from the wire is bounded (at most
  :data:`MAX_CHARS` characters of ASCII digits, a magnitude within
  ``1e-MAX_EXPONENT .. 1e+MAX_EXPONENT``; see ``dialects/_wire.py``), so
  arithmetic on them can neither overflow nor grow without limit.
- The library computes and rounds with its own contexts, never the calling
  thread's ``decimal`` context: the same record has the same values, text and
  hash in every thread, whatever a thread's precision, rounding or traps.

:func:`display` formats any Decimal in a bounded number of characters (plain
notation where that is short, scientific otherwise).
"""

from __future__ import annotations

import decimal
from decimal import Decimal

__all__ = ["CONTEXT", "MAX_CHARS", "MAX_EXPONENT", "display"]

#: The library's arithmetic context: 28 digits, banker's rounding, and traps
#: that turn a bug into an exception rather than a silent NaN.
CONTEXT = decimal.Context(
    prec=28,
    rounding=decimal.ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)

#: A wire decimal's magnitude lies within 1e-40 .. 1e40 (its adjusted exponent).
MAX_EXPONENT = 40
#: A wire decimal is written in at most this many characters.
MAX_CHARS = 64

_ROUND = decimal.Context(prec=200, rounding=decimal.ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999, traps=[])
_SCIENTIFIC = decimal.Context(prec=7, rounding=decimal.ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999, traps=[])


def display(value: Decimal | None, places: int | None = None, *, width: int = 24) -> str:
    """``value`` as short text (at most about ``width`` + ``places`` characters).

    Args:
        value: the number; ``None`` gives ``"n/a"``.
        places: digits after the point (half-even); None keeps the value's own.
        width: a value whose plain rendering would be longer is shown in
            scientific notation with 7 significant digits.
    """
    if value is None:
        return "n/a"
    if not value.is_finite():
        return str(value)
    if places is not None:
        places = max(0, min(places, 20))
    exp = value.adjusted()
    if value.is_zero() or -width // 2 <= exp < width:
        shown = value if places is None else value.quantize(Decimal(1).scaleb(-places), context=_ROUND)
        text = format(shown, "f")
        if len(text) <= width + (places or 0) + 2:
            return text
    return format(_SCIENTIFIC.plus(value), "E")
