"""Package attributes imported on first use (PEP 562), for ``card`` and ``card.virtual``.

A command that needs none of a package's names (``digisign-web --help``) then does not pay for
cryptography, asn1crypto and pyscard just because it imported the package for one light constant."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing costs milliseconds that ``--help`` should not pay
if TYPE_CHECKING:
    from collections.abc import Callable


def lazy_attributes(homes: dict[str, str], namespace: dict[str, object]) -> Callable[[str], object]:
    """The module ``__getattr__`` that imports ``name`` from ``homes[name]`` and keeps it in ``namespace``."""

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return __getattr__
