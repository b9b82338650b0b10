"""format_number: one consistent format for the report and the terminal."""
from __future__ import annotations

import pytest

from medisynth.report.format import MISSING, format_chance, format_interval, format_number


@pytest.mark.parametrize("value,kind,text", [
    (1.0, "number", "1.00"), (12.345, "number", "12.3"), (0.012345, "number", "0.0123"), (7.606e-07, "number", "7.61e-07"),
    (123456.0, "number", "1.23e+05"), (0.0, "number", "0"), (-0.5, "number", "-0.500"), (3, "number", "3"),
    (7.605e-07, "fraction", "0.000"), (1.0, "fraction", "1.000"), (1.2, "ratio", "1.20\u00d7"),
    (None, "number", MISSING), (float("nan"), "number", MISSING), (True, "number", "yes"),
])
def test_format_number(value, kind, text):
    assert format_number(value, kind=kind) == text


@pytest.mark.parametrize("value,kind,text", [
    (0.042, "fraction", "+0.042"), (-0.042, "fraction", "-0.042"), (0.0, "fraction", "+0.000"),
    (12.345, "number", "+12.3"), (-7.606e-07, "number", "-7.61e-07"), (None, "fraction", MISSING),
])
def test_signed(value, kind, text):
    assert format_number(value, kind=kind, signed=True) == text


def test_interval():
    assert format_interval(0.1, 0.25, kind="fraction") == "[0.100, 0.250]"


@pytest.mark.parametrize("chance,text", [
    ({"metric": "balanced", "value": 0.2057, "chance": 0.2}, "balanced accuracy 0.206 vs chance 0.200"),
    ({"metric": "accuracy", "value": 0.8, "chance": 0.74}, "accuracy 0.800 vs chance 0.740"),
    ({"metric": "balanced", "value": None, "chance": None}, f"balanced accuracy {MISSING} vs chance {MISSING}"),
])
def test_format_chance(chance, text):
    assert format_chance(chance) == text
