"""Argument types the command groups share: numbers with a bound, refused by argparse
with a message naming the bad text (argparse then exits 2, as the CLI promises)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["nonneg_float", "nonneg_int", "positive_float", "positive_int"]


def _number(kind: Callable[[str], float], noun: str, text: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1.

    >>> positive_int("3")
    3
    """
    value = int(_number(int, "an integer", text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    value = int(_number(int, "an integer", text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A number > 0."""
    value = _number(float, "a number", text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """A number >= 0."""
    value = _number(float, "a number", text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value
