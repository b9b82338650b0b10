"""One registry helper for everything medisynth finds by name: models, data sources, feature spaces.

In the spirit of torch-fidelity's ``registry.py``: ``register`` checks the name, checks the
entry against the registry's base class, and refuses a name that is taken by something else.
An entry can also be *lazy*: a name -> module table, the module imported on first lookup (it
registers the name when imported). So ``medisynth sample`` on a cgan run imports the GAN
modules only, never the diffusion models' MONAI.

    MODELS = Registry("model", base=GenerativeModel, lazy={"cgan": "medisynth.models.cgan"})

    @MODELS.register("cgan")
    class CGAN(GenerativeModel): ...

    MODELS.get("cgan")   # imports medisynth.models.cgan on first use
"""
from __future__ import annotations

import importlib
import re
from typing import Any, Generic, Iterator, Optional, TypeVar

from medisynth.errors import MedisynthError

T = TypeVar("T")

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Generic[T]):
    """Names -> classes or factories of one kind. Iterating, ``in`` and ``len`` see the lazy names
    too without importing them; ``get`` (and ``values``/``items``) import what they return."""

    def __init__(self, kind: str, base: Optional[type] = None, lazy: Optional[dict[str, str]] = None):
        self.kind = kind
        self.base = base
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        for name, module in (lazy or {}).items():
            self._check_name(name)
            self._lazy[name] = module

    # -- registering -----------------------------------------------------------------------------
    def _check_name(self, name: Any) -> None:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"{self.kind} name {name!r} is not valid: use lower-case letters, digits, '-', '_' or '.'"
            )

    def register(self, name: str, obj: Optional[T] = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator that does so.

        Refuses (ValueError) an invalid name, an object that is not a subclass of ``base`` (or not
        callable, without a base), a name registered to another object, and a lazy name
        claimed by another module than the one the table names."""
        self._check_name(name)
        if obj is None:
            return lambda target: self.register(name, target)
        if self.base is not None:
            if not (isinstance(obj, type) and issubclass(obj, self.base)):
                raise ValueError(f"{self.kind} {name!r}: {_origin(obj)} is not a subclass of {self.base.__name__}")
        elif not callable(obj):
            raise ValueError(f"{self.kind} {name!r}: {obj!r} is not callable")
        taken = self._entries.get(name)
        if taken is not None and _origin(taken) != _origin(obj):  # the same class again (a module reload) is fine
            raise ValueError(f"{self.kind} {name!r} is already registered by {_origin(taken)}; choose another name")
        module = self._lazy.get(name)
        if module is not None and module != getattr(obj, "__module__", None):
            raise ValueError(f"{self.kind} {name!r} belongs to {module}; {_origin(obj)} cannot register it")
        self._entries[name] = obj
        return obj

    # -- looking up ------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The entry registered as ``name`` (importing its module when lazy); MedisynthError if unknown."""
        if name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])
            if name not in self._entries:
                raise RuntimeError(f"{self._lazy[name]} was imported but did not register {self.kind} {name!r}")
        if name not in self._entries:
            raise MedisynthError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every name, lazy ones included, in registration order (the lazy table first)."""
        return list(dict.fromkeys([*self._lazy, *self._entries]))

    def keys(self) -> list[str]:
        return self.names()

    def values(self) -> list[T]:
        return [self.get(name) for name in self.names()]

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"

