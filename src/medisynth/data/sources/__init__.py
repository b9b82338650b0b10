"""Data-set layouts that ``medisynth prepare`` reads. Importing registers them (detection order matters:
the most specific layouts first)."""
from medisynth.data.sources.base import SOURCE_REGISTRY, Record, Source, detect_source, get_source, register_source

__all__ = ["SOURCE_REGISTRY", "Record", "Source", "detect_source", "get_source", "register_source"]
