"""Log / grid / checkpoint intervals: a step count or a duration, parsed in one place."""
import json

import numpy as np
import pytest
from PIL import Image

from medisynth.errors import MedisynthError
from medisynth.training.config import TrainConfig
from medisynth.training.intervals import Interval, IntervalClock, parse_interval
from medisynth.training.trainer import train


@pytest.mark.parametrize("value, expected", [
    (50, Interval(steps=50)), ("50", Interval(steps=50)), ("30s", Interval(seconds=30.0)),
    ("5m", Interval(seconds=300.0)), ("1h", Interval(seconds=3600.0)), ("0.5s", Interval(seconds=0.5)),
])
def test_parse_interval(value, expected):
    assert parse_interval(value, "--log-every") == expected


@pytest.mark.parametrize("value", ["5x", "1.5", "", "-3", "s", True, 0])
def test_parse_interval_rejects_with_the_flag(value):
    with pytest.raises(MedisynthError, match="--log-every"):
        parse_interval(value, "--log-every")


def test_zero_means_off_only_where_allowed():
    assert parse_interval(0, "--sample-every", allow_zero=True).off
    with pytest.raises(MedisynthError, match="--checkpoint-every"):
        TrainConfig(data="d", out="o", model="toy-cgan", steps=1, checkpoint_every="0").validate()


def test_clock_steps_and_seconds():
    steps = IntervalClock(Interval(steps=3))
    assert [s for s in range(1, 10) if steps.due(s, 0.0)] == [3, 6, 9]
    seconds = IntervalClock(Interval(seconds=1.0))
    # a slow step jumping over several intervals fires once, not once per interval
    assert [t for t in (0.5, 1.0, 1.2, 3.7, 3.9, 4.0) if seconds.due(0, t)] == [1.0, 3.7, 4.0]


def test_duration_log_interval_writes_several_lines_and_labelled_grid(toy_data, tmp_path, make_config):
    run = tmp_path / "run"
    config = make_config(toy_data, run, steps=100_000, log_every="0.5s", sample_every=0)
    config.steps, config.minutes = None, 2.5 / 60  # 2.5 s of training
    train(config)
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) >= 4, lines
    gaps = np.diff([l["seconds"] for l in lines[:-1]])
    assert (gaps > 0.3).all(), gaps  # lines come by the clock, not every step
    grid = sorted((run / "samples").glob("step-*.png"))[-1]
    width, height = Image.open(grid).size
    assert height == 2 * 16 + 3 * 2  # one row per class of the 16 px toy set
    assert width > 8 * 16 + 9 * 2 + 5  # the unlabelled grid's width plus a margin for the class names
