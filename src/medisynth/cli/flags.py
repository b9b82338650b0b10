"""Command classes behind every ``medisynth`` command: switches shown as switches, old flag spellings.

One word has one meaning across commands (README, "A session at the command line"): the real data
set is the positional DATA argument, the synthetic set is ``--synthetic``, image counts are
``--n`` and ``--per-class``, ``--steps`` is the training budget, booleans are switches. Spellings
that an earlier release used are kept working as hidden aliases: ``parse_args`` rewrites them
to today's spelling before click parses the line and prints one deprecation note per alias
on stderr, so they appear in no ``--help`` and cost the command signatures nothing. The rewrite
works on tokens, before click knows which token is a value: a value spelled exactly like an old
flag (``--out --fake``) would be rewritten too, a price paid for keeping aliases out of signatures.

Usage::

    @app.command(cls=with_aliases({"--fake": "--synthetic", "--real": DATA}))
    def evaluate(data: Path = typer.Argument(...), synthetic: Path = typer.Option(..., "--synthetic"), ...):
"""
from __future__ import annotations

from typing import Mapping, Optional

import typer
from typer.core import TyperCommand, TyperGroup

#: alias target meaning "the value becomes the command's positional argument" (``--real DATA``)
DATA = "DATA"
#: alias target meaning "drop the flag, it asks for the default" (``demo --no-overwrite``)
DEFAULT = None


def _show_switches(params) -> None:
    """typer labels boolean flags ``<bool>`` in --help as if they took a value; they do not."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def rename_deprecated(args: list[str], aliases: Mapping[str, Optional[str]], warn=None) -> list[str]:
    """Rewrite old flag spellings in ``args`` to today's, with one note per alias used.

    ``aliases`` maps an old flag to its new spelling, to ``DATA`` (the old option's value is the
    positional argument: the flag is dropped and its value stays in place) or to ``DEFAULT``
    (a switch that asked for the default: dropped). ``--old=value`` is handled; nothing after
    ``--`` is touched. The note goes through ``warn`` (default: ``typer.echo(..., err=True)``).
    """
    warn = warn or (lambda line: typer.echo(line, err=True))
    out: list[str] = []
    noted: set[str] = set()
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in aliases:
            out.append(arg)
            continue
        new = aliases[name]
        if name not in noted:
            noted.add(name)
            if new == DATA:
                warn(f"note: {name} is deprecated; pass the data set as the first argument (DATA)")
            elif new is DEFAULT:
                warn(f"note: {name} is deprecated; it is the default, leave it out")
            else:
                warn(f"note: {name} is deprecated; use {new}")
        if new == DATA:
            if eq:
                out.append(value)
        elif new is not DEFAULT:
            out.append(new + eq + value)
    return out


class Command(TyperCommand):
    """A medisynth command: switches rendered as switches, ``aliases`` accepted with a note."""

    aliases: Mapping[str, Optional[str]] = {}

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _show_switches(params)
        return params

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, rename_deprecated(args, self.aliases))


class Group(TyperGroup):
    """A medisynth command group (the root and ``phantom``/``pipeline``): switches as switches."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _show_switches(params)
        return params


def with_aliases(aliases: Mapping[str, Optional[str]]) -> type[Command]:
    """A ``Command`` class that accepts the old spellings in ``aliases`` (see ``rename_deprecated``)."""
    return type("Command", (Command,), {"aliases": dict(aliases)})
