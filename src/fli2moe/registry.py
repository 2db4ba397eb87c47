"""Named entries of one kind (datasets, encoders, models, attribution methods), each filled by the module
that implements the entry.

A module registers what it implements where it implements it:

    MODELS = Registry("model")              # in the module that defines the kind's interface

    @MODELS.register("dense")               # in the module that implements the entry
    class DenseEntry: ...

and every list of names (params validation, command-line choices, error messages) is read from the registry,
so adding an entry touches one module. A package of entries (datasets/, models/) imports all of its modules
with `import_submodules`, so a new module there is registered without any list to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one `kind` ("dataset", "model", ...) by name, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its argument under `name` and returns it unchanged.

        Raises:
            ValueError: `name` is already registered (two modules would claim one name).
        """
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def unregister(self, name: str) -> None:
        """Remove `name` (tests register toy entries and take them out again)."""
        del self._entries[name]

    def __getitem__(self, name: str) -> T:
        """The entry registered as `name`; ValueError naming the known ones otherwise."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r} (known: {', '.join(self._entries)})")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self):
        return self._entries.items()


def import_submodules(package: str, path: list[str]) -> None:
    """Import every module of `package` (its `__path__`), so that each registers its entries."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
