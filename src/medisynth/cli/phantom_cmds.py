"""Commands: phantom (filled in by its owner)."""
from medisynth.cli.app import app  # noqa: F401
