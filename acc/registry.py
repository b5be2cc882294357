"""Discovery of plugin classes (tasks, recipes) from the modules of a package.

Predictable: modules are imported in sorted order; a duplicate name is an error; a module that
fails to import is reported with its path and the error, and does not take the others down.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field


class RegistryError(ValueError):
    """Two plugins with one name, or a name that is not registered."""


@dataclass
class Registry:
    kind: str  # "task" or "recipe", for messages
    items: dict[str, type] = field(default_factory=dict)
    import_errors: dict[str, str] = field(default_factory=dict)  # module path -> error

    def get(self, name: str) -> type:
        if name not in self.items:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known {self.kind}s: "
                f"{', '.join(self.names()) or '(none)'}"
            )
        return self.items[name]

    def names(self) -> list[str]:
        return sorted(self.items)


def discover(
    package: str,
    base: type,
    name_of: Callable[[type], str],
    kind: str,
    skip: tuple[str, ...] = ("base",),
) -> Registry:
    """Every concrete subclass of ``base`` defined in a module of ``package``."""
    registry = Registry(kind)
    pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in skip or info.name.startswith("_"):
            continue
        module_name = f"{package}.{info.name}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken plugin must not hide the others
            path = getattr(info.module_finder, "path", "?")
            registry.import_errors[f"{path}/{info.name}.py"] = f"{type(exc).__name__}: {exc}"
            continue
        for _, cls in sorted(inspect.getmembers(module, inspect.isclass)):
            if cls.__module__ != module_name or not issubclass(cls, base) or cls is base:
                continue
            if inspect.isabstract(cls) or cls.__dict__.get("abstract", False):  # not inherited
                continue
            name = name_of(cls)
            if name in registry.items and registry.items[name] is not cls:
                raise RegistryError(
                    f"duplicate {kind} name {name!r}: "
                    f"{registry.items[name].__module__} and {module_name}"
                )
            registry.items[name] = cls
    return registry
