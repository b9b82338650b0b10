"""How often a training run logs, draws a sample grid and checkpoints: a step count or a duration.

``--log-every 50`` means every 50 steps; ``--log-every 10s`` (or ``30s``, ``5m``, ``1h``,
``0.5s``) means whenever that much wall-clock time has passed since the last time. Durations
suit CPU runs, which do 15-30 steps a minute, so a step count tuned for a GPU would log once.

Durations only decide WHEN a line, grid or checkpoint is written; none of these touch the
training trajectory (grids fork the RNG, a checkpoint after step N holds everything step N+1
reads), so a run resumed from any checkpoint stays exact whichever kind of interval was used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Union

from medisynth.errors import MedisynthError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")

IntervalValue = Union[int, float, str]


@dataclass(frozen=True)
class Interval:
    """Every ``steps`` steps, or every ``seconds`` seconds; neither (0) means never."""

    steps: Optional[int] = None
    seconds: Optional[float] = None

    @property
    def off(self) -> bool:
        return not self.steps and not self.seconds


def parse_interval(value: IntervalValue, flag: str, allow_zero: bool = False) -> Interval:
    """``50`` / ``"50"`` -> every 50 steps; ``"30s"``, ``"5m"``, ``"1h"`` -> a duration.

    Raises MedisynthError naming ``flag`` on anything else (and on 0 unless ``allow_zero``)."""
    hint = f"{flag} {value!r}: give a step count (50) or a duration (30s, 5m, 1h)"
    if isinstance(value, bool):
        raise MedisynthError(hint)
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
        if isinstance(value, float) and not value.is_integer():
            raise MedisynthError(hint + "; a step count is a whole number")
    else:
        match = _PATTERN.match(str(value))
        if not match:
            raise MedisynthError(hint)
        number, unit = float(match.group(1)), match.group(2)
        if not unit and not number.is_integer():
            raise MedisynthError(hint + "; a step count is a whole number")
    if number == 0:
        if allow_zero:
            return Interval()
        raise MedisynthError(f"{flag} must be more than 0 (got {value!r})")
    if unit:
        return Interval(seconds=number * UNITS[unit])
    return Interval(steps=int(number))


class IntervalClock:
    """Answers "is it time?" after each step, for one ``Interval``."""

    def __init__(self, interval: Interval, start_seconds: float = 0.0):
        self.interval = interval
        self._next = start_seconds + (interval.seconds or 0.0)

    def pending(self, step: int, seconds: float) -> bool:
        """Whether ``due`` would answer yes, without moving the clock on."""
        if self.interval.steps:
            return step % self.interval.steps == 0
        return bool(self.interval.seconds) and seconds >= self._next

    def due(self, step: int, seconds: float) -> bool:
        """``step``: steps done so far; ``seconds``: wall-clock seconds since the clock started."""
        if self.interval.steps:
            return step % self.interval.steps == 0
        if self.interval.seconds and seconds >= self._next:
            # skip intervals a slow step jumped over rather than firing for each of them
            while self._next <= seconds:
                self._next += self.interval.seconds
            return True
        return False


__all__ = ["Interval", "IntervalClock", "parse_interval"]
