"""argparse types the command-line tools share: each names the bad value and what to give instead."""

from __future__ import annotations

import argparse


def parse_levels(text: str) -> list[float]:
    try:
        levels = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 1,2,4,8") from None
    if not levels or min(levels) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers, e.g. 1,2,4,8")
    return levels


def positive(kind):
    def conv(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    return conv


def processes(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of processes >= 1, or auto")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a fraction in (0, 1], e.g. 0.8")
    return value


def share(text: str) -> float:
    """A share in [0, 1] (0 allowed), e.g. an error rate."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a fraction in [0, 1], e.g. 0.01 for 1 %")
    return value
