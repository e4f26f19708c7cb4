"""Plug-ins: installed packages that register architectures, datasets, distillation methods, feature losses or
synthetic-set formats through the entry-point group ``elfdd.plugins``.

A plug-in package declares, in its own pyproject.toml::

    [project.entry-points."elfdd.plugins"]
    my_models = "my_package.elfdd_plugin:register"

``register`` (any callable taking no argument, or a module whose import registers) calls elfdd's ``register_*``
functions. elfdd loads every plug-in the first time any registry is read, so the CLI, flow runs started by a
deployment's worker and Dask workers all see the same names without being told about them."""

from __future__ import annotations

from importlib.metadata import entry_points

from .errors import BadInput

GROUP = "elfdd.plugins"
_loaded: list[str] | None = None


def load_plugins() -> list[str]:
    """Load the installed plug-ins once per process; the names of those loaded. A plug-in that fails to load is bad
    input naming it (its package is broken or missing something), not a silently smaller registry."""
    global _loaded
    if _loaded is not None:
        return _loaded
    _loaded = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        try:
            hook = point.load()
            if callable(hook):
                hook()
        except BadInput:
            raise
        except Exception as exc:
            raise BadInput(
                f"plug-in {point.name} ({point.value}, group {GROUP}) failed to load: {type(exc).__name__}: {exc}"
            ) from None
        _loaded.append(point.name)
    return _loaded
