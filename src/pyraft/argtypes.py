"""Argument types shared by the ``pyraft`` commands.

Each is an ``argparse`` ``type=``: it returns the parsed value or raises
``argparse.ArgumentTypeError`` with a message that says what was wrong, which the command
prints as the one line of a usage error (exit status 2). No Python reprs in the messages.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["positive_int", "positive_seconds"]


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0 (``0.5``, ``20``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def positive_int(what: str = "an integer") -> Callable[[str], int]:
    """The type of an integer of at least 1; ``what`` names it in messages (``a member
    id``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not {what}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} is at least 1, not {value}")
        return value

    parse.__name__ = what.removeprefix("a ").removeprefix("an ").replace(" ", "_")
    return parse
