"""One registry type for every kind of plug-in (architectures, datasets, distillation methods, feature losses,
synthetic-set formats): a registered name is a valid config value; an unknown one is refused with the registered
names listed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from .plugins import load_plugins

T = TypeVar("T")


class Registry(dict[str, T]):
    """Named entries of one ``kind`` (``"dataset"``, ``"feature loss"``, ...) in registration order."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    # Every read loads the installed plug-ins first (core/plugins.py); registering does not, so elfdd's own modules
    # register their entries at import without loading a plug-in that imports them in turn.
    def __contains__(self, name: object) -> bool:
        load_plugins()
        return super().__contains__(name)

    def __getitem__(self, name: str) -> T:
        load_plugins()
        return super().__getitem__(name)

    def __iter__(self) -> Iterator[str]:
        load_plugins()
        return super().__iter__()

    def __len__(self) -> int:
        load_plugins()
        return super().__len__()

    def items(self) -> Any:
        load_plugins()
        return super().items()

    def values(self) -> Any:
        load_plugins()
        return super().values()

    def keys(self) -> Any:
        load_plugins()
        return super().keys()

    def register(self, name: str, entry: T) -> None:
        if super().__contains__(name):
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = entry

    def names(self) -> list[str]:
        return list(self)

    def unknown(self, name: str, *also: str) -> str:
        """The message for a name that is not registered; ``also``: accepted values that are not entries."""
        return f"unknown {self.kind} {name!r}; registered: {', '.join([*also, *self])}"

    def check(self, name: str, *also: str) -> str:
        """``name`` when it is registered (or one of ``also``); ValueError otherwise (pydantic validators)."""
        if name not in self and name not in also:
            raise ValueError(self.unknown(name, *also))
        return name

    def lookup(self, name: str) -> T:
        """The entry for ``name``; KeyError naming the registered entries otherwise."""
        if name not in self:
            raise KeyError(self.unknown(name))
        return self[name]
