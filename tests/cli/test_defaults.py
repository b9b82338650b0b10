"""Every option's default on the command line is the default of the API's config (medisynth.defaults):
a command that drifted from its config would run differently from the same call in Python."""
from __future__ import annotations

import dataclasses

import pytest
import typer

from medisynth.balancing import BalanceConfig
from medisynth.cli import app
from medisynth.data.prepare import PrepareConfig
from medisynth.downstream import UtilityConfig
from medisynth.evaluation import EvaluateConfig
from medisynth.sampling import SampleConfig

# command -> (its config, {option name: config field} where the two names differ)
COMMANDS = {
    "prepare": (PrepareConfig, {}),
    "sample": (SampleConfig, {"image_format": "format", "sampling_steps": "steps"}),
    "balance": (BalanceConfig, {"target_count": "target"}),
    "evaluate": (EvaluateConfig, {"per_class": "num_per_class", "features": "feature_spaces", "synthetic": "fake"}),
    "utility": (UtilityConfig, {"time_budget_per_run": "time_budget_per_run_s"}),
}


def config_default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else dataclasses.MISSING


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_command_line_defaults_are_the_configs(name):
    config, renamed = COMMANDS[name]
    fields = {f.name: config_default(f) for f in dataclasses.fields(config)}
    command = typer.main.get_command(app).commands[name]
    compared = 0
    for param in command.params:
        field = renamed.get(param.name, param.name)
        if field not in fields or fields[field] is dataclasses.MISSING or param.required:
            continue
        expected = fields[field]
        if field == "feature_spaces":  # a comma list on the command line
            expected = ",".join(expected)
        assert param.default == expected, f"{name} --{param.name}: {param.default!r} on the command line, {expected!r} in {config.__name__}"
        compared += 1
    assert compared >= 5  # the table is read, not skipped
