"""Components chosen by name from the Config (scorers, readers)."""
from __future__ import annotations

import importlib
from typing import Callable, Mapping, TypeVar

from ..config import Config
from ..errors import RagError

T = TypeVar("T")

# A registry maps a name to a factory taking the Config, or to "module:attribute" of one: that module
# is imported on first use, so a component with heavy dependencies costs nothing until it is chosen.
Factory = Callable[[Config], T] | str


def create(registry: Mapping[str, Factory], name: str, config: Config, what: str):
    """The component `name` of `registry`, made for `config`; `what` names the kind in the error."""
    factory = registry.get(name)
    if factory is None:
        raise RagError(f"Unbekannter {what}: {name} (bekannt: {', '.join(registry)})")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(config)
