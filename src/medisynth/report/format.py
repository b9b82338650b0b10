"""One number format for the report and the terminal: significant digits, never ``7.605e-07`` beside ``1``.

``format_number(x)`` gives 3 significant digits in fixed notation between 0.001 and 100,000
(``1.00``, ``12.3``, ``0.0123``) and scientific outside it (``7.61e-07``); ``kind="fraction"``
(accuracies, precision, recall, coverage: values in [0, 1] read side by side) always gives three
decimals (``0.000``, ``0.167``, ``1.000``); ``kind="ratio"`` adds a multiplication sign (``1.20x``).
``signed=True`` writes a plus sign on positive values, for differences read beside each other (``+0.042``).
"""
from __future__ import annotations

import math
from typing import Any

MISSING = "\u2013"  # en dash: a figure that could not be computed (the reason is given next to it)


def format_number(value: Any, digits: int = 3, kind: str = "number", signed: bool = False) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return MISSING
    sign = "+" if signed else "-"
    if kind == "fraction":
        return f"{x:{sign}.3f}"
    if x == 0:
        text = "0"
    elif 1e-3 <= abs(x) < 1e5:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
        text = f"{x:{sign}.{decimals}f}"
    else:
        text = f"{x:{sign}.{digits - 1}e}"
    return text + "\u00d7" if kind == "ratio" else text


def format_chance(chance: dict) -> str:
    """"balanced accuracy 0.206 vs chance 0.200": the figure a ``metrics.chance`` test judged, against its chance level."""
    figure = "balanced accuracy" if chance.get("metric") == "balanced" else "accuracy"
    return (f"{figure} {format_number(chance.get('value'), kind='fraction')} "
            f"vs chance {format_number(chance.get('chance'), kind='fraction')}")


def format_interval(low: Any, high: Any, digits: int = 3, kind: str = "number") -> str:
    """``[low, high]`` with both ends in the same format."""
    return f"[{format_number(low, digits, kind)}, {format_number(high, digits, kind)}]"


__all__ = ["format_number", "format_interval", "MISSING"]
