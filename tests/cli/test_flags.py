"""CLI flags: one word, one meaning. Old spellings are hidden aliases with a note; booleans are switches.

The commands' bodies are replaced by recorders (same signature), so these tests check what
the command line parses to, in milliseconds; the commands themselves are run end to end by
the tests of each stage.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medisynth.cli import app
from medisynth.cli.flags import DATA, DEFAULT, rename_deprecated

# the fewest arguments each command parses with (paths need not exist: nothing runs)
REQUIRED = {
    ("version",): [],
    ("prepare",): ["src", "--out", "o"],
    ("train",): ["data"],
    ("sample",): ["run", "--out", "o"],
    ("evaluate",): ["data", "--synthetic", "s", "--out", "o"],
    ("balance",): ["data", "--run", "r", "--out", "o"],
    ("utility",): ["data", "--out", "o"],
    ("demo",): [],
    ("phantom", "fundus"): ["--out", "o"],
    ("phantom", "ct"): ["--out", "o"],
    ("pipeline", "vessels"): ["--vessel-run", "v", "--translate-run", "t", "--out", "o"],
    ("pipeline", "vessels-eval"): ["data", "--synthetic", "s"],
    ("pipeline", "sr-eval"): ["data", "--sr-run", "r"],
    ("export",): ["run", "--out", "o"],
    ("runs", "compare"): ["run"],
}

# (command, old spelling, today's spelling): the same parse, plus the note on stderr
ALIASES = [
    (("evaluate",), ["--real", "data", "--fake", "s", "--out", "o"], ["data", "--synthetic", "s", "--out", "o"]),
    (("evaluate",), ["--real=data", "--fake=s", "--out", "o"], ["data", "--synthetic", "s", "--out", "o"]),
    (("evaluate",), [*REQUIRED[("evaluate",)], "--num-per-class", "7"], [*REQUIRED[("evaluate",)], "--per-class", "7"]),
    (("utility",), ["--real", "data", "--out", "o"], ["data", "--out", "o"]),
    (("utility",), [*REQUIRED[("utility",)], "--quiet"], [*REQUIRED[("utility",)], "--no-progress"]),
    (("utility",), [*REQUIRED[("utility",)], "-q"], [*REQUIRED[("utility",)], "--no-progress"]),
    (("balance",), [*REQUIRED[("balance",)], "--target", "9"], [*REQUIRED[("balance",)], "--target-count", "9"]),
    (("balance",), [*REQUIRED[("balance",)], "--quiet"], [*REQUIRED[("balance",)], "--no-progress"]),
    (("balance",), [*REQUIRED[("balance",)], "-q"], [*REQUIRED[("balance",)], "--no-progress"]),
    (("sample",), [*REQUIRED[("sample",)], "--steps", "5"], [*REQUIRED[("sample",)], "--sampling-steps", "5"]),
    (("train",), ["data", "--per-class"], ["data", "--model-per-class"]),
    (("train",), ["data", "--no-per-class"], ["data", "--no-model-per-class"]),
    (("demo",), ["--n-images", "30"], ["--n", "30"]),
    (("demo",), ["--no-overwrite"], []),
    (("pipeline", "vessels-eval"), ["--real", "data", "--synthetic", "s"], ["data", "--synthetic", "s"]),
    (("pipeline", "sr-eval"), ["--data", "data", "--sr-run", "r"], ["data", "--sr-run", "r"]),
]


def _command_info(typer_app, path):
    """The registered CommandInfo of ``path`` (e.g. ("pipeline", "sr-eval"))."""
    *groups, name = path
    for group in groups:
        typer_app = next(g.typer_instance for g in typer_app.registered_groups if g.name == group)
    for info in typer_app.registered_commands:
        if (info.name or info.callback.__name__.replace("_", "-")) == name:
            return info
    raise LookupError(path)


def _all_paths(typer_app=app, prefix=()):
    paths = [(*prefix, info.name or info.callback.__name__.replace("_", "-")) for info in typer_app.registered_commands]
    for group in typer_app.registered_groups:
        paths += _all_paths(group.typer_instance, (*prefix, group.name))
    return paths


@pytest.fixture
def record(monkeypatch):
    """Replace a command's body by one that records its parsed arguments; returns them per call."""
    calls: list[dict] = []

    def install(path):
        info = _command_info(app, path)

        @functools.wraps(info.callback)
        def recorder(**kwargs):
            calls.append(kwargs)

        monkeypatch.setattr(info, "callback", recorder)
        return calls

    return install


def invoke(*args):
    return CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}).invoke(app, [str(a) for a in args])


def test_every_command_is_covered():
    assert sorted(_all_paths()) == sorted(REQUIRED)


@pytest.mark.parametrize("path, old, new", ALIASES, ids=lambda v: " ".join(v) if isinstance(v, (list, tuple)) else v)
def test_old_spelling_parses_like_the_new_one_and_says_so(record, path, old, new):
    calls = record(path)
    today = invoke(*path, *new)
    assert today.exit_code == 0, today.output
    assert today.stderr == ""  # today's spelling: no note
    before = invoke(*path, *old)
    assert before.exit_code == 0, before.output
    assert calls[1] == calls[0]
    used = sorted({a.split("=")[0] for a in old if a.startswith("-") and a.split("=")[0] not in new})
    notes = before.stderr.strip().splitlines()
    assert len(notes) == len(used) and all(line.startswith("note: ") and "is deprecated" in line for line in notes)
    for flag, line in zip(used, sorted(notes, key=lambda s: s.split()[1])):
        assert line.startswith(f"note: {flag} is deprecated; ")


@pytest.mark.parametrize("path, old", sorted({(p, a.split("=")[0]) for p, olds, news in ALIASES
                                              for a in olds if a.startswith("-") and a.split("=")[0] not in news}))
def test_old_spellings_are_hidden_from_help(path, old):
    help_text = invoke(*path, "--help").output
    assert not re.search(re.escape(old) + r"(?![\w-])", help_text), f"{old} shows in `{' '.join(path)} --help`"


def test_the_notes_name_the_replacement():
    notes = []
    args = rename_deprecated(["--fake", "a", "--fake", "b", "--real", "d", "--quiet", "--no-overwrite", "--", "--fake"],
                             {"--fake": "--synthetic", "--real": DATA, "--quiet": "--no-progress", "--no-overwrite": DEFAULT},
                             warn=notes.append)
    assert args == ["--synthetic", "a", "--synthetic", "b", "d", "--no-progress", "--", "--fake"]
    assert notes == [
        "note: --fake is deprecated; use --synthetic",  # once, though used twice
        "note: --real is deprecated; pass the data set as the first argument (DATA)",
        "note: --quiet is deprecated; use --no-progress",
        "note: --no-overwrite is deprecated; it is the default, leave it out",
    ]


def test_data_twice_is_refused(record):
    record(("evaluate",))
    result = invoke("evaluate", "data", "--real", "data2", "--synthetic", "s", "--out", "o")
    assert result.exit_code == 2 and "unexpected extra argument" in result.output.lower()


def _switches():
    """(command, parameter name, on spellings, off spellings) of every boolean option of every command."""
    import typer.main

    root = typer.main.get_command(app)
    found = []
    for path in REQUIRED:
        command = root
        for name in path:
            command = command.commands[name]
        for param in command.params:
            if getattr(param, "is_flag", False) and param.name != "help":
                found.append((path, param.name, tuple(param.opts), tuple(param.secondary_opts)))
    return found


SWITCHES = _switches()


def test_the_switches_are_the_expected_ones():
    names = {(" ".join(p), opts[0]) for p, _, opts, _ in SWITCHES}
    for expected in [("balance", "--progress"), ("utility", "--progress"), ("sample", "--progress"), ("sample", "--ema"),
                     ("train", "--model-per-class"), ("evaluate", "--overwrite"), ("demo", "--overwrite")]:
        assert expected in names


@pytest.mark.parametrize("path, name, on, off", SWITCHES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else str(v))
def test_each_switch_is_a_switch(record, path, name, on, off):
    calls = record(path)
    base = REQUIRED[path]
    for spelling, value in [*((s, True) for s in on), *((s, False) for s in off)]:
        result = invoke(*path, *base, spelling)
        assert result.exit_code == 0, result.output
        assert calls[-1][name] is value, spelling
    # a switch takes no value: `--progress true` leaves `true` as an extra argument, refused
    refused = invoke(*path, *base, on[0], "true")
    assert refused.exit_code == 2 and "true" in refused.output


@pytest.mark.parametrize("path", list(REQUIRED), ids=" ".join)
def test_help_shows_switches_without_a_value(path):
    help_text = invoke(*path, "--help").output
    assert "--help" in help_text and "<bool>" not in help_text
    for switch_path, _, on, off in SWITCHES:
        if switch_path == path:
            assert on[0] in help_text and all(o in help_text for o in off)


def test_root_help_shows_no_bool():
    assert "<bool>" not in invoke("--help").output
    assert "<bool>" not in invoke("phantom", "--help").output
