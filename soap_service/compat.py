"""Spyne 2.14 on Python 3.12 and 3.13: the one place that makes the released spyne import.

Why: spyne 2.14 (2022, the newest release) vendors `six` as `spyne.util.six`, whose
meta-path importer (the lazy `six.moves` modules) has only `find_module`/`load_module`.
Python 3.12 no longer calls those, so `import spyne` fails on `spyne.util.six.moves`.
(3.13 also removed the `cgi` module spyne imports; the `legacy-cgi` package, a dependency
on 3.13 only, puts it back.)

What: before anything imports spyne, load spyne's own vendored `six` (not the real `six`:
spyne's copy has additions such as `get_function_name`) and give its importer the
`find_spec`, `create_module` and `exec_module` that six 1.16 has. Nothing else of spyne
is touched, and on 3.11 nothing at all is done.

When it can go: with a spyne release that includes arskom/spyne#704 (the same fix in
spyne's master) and a Python floor of that release.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

VENDORED_SIX = "spyne.util.six"


def needed(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> bool:
    """Whether this Python no longer calls a meta-path importer's find_module."""
    return version >= (3, 12)


def make_spyne_importable() -> None:
    """Load spyne's vendored six with a modern importer, once, on Python 3.12 and newer."""
    if not needed() or VENDORED_SIX in sys.modules:
        return
    spyne = importlib.util.find_spec("spyne")  # its location only: spyne is not run
    if spyne is None or not spyne.submodule_search_locations:
        return  # not installed: the import that needs it will say so
    path = Path(next(iter(spyne.submodule_search_locations))) / "util" / "six.py"
    spec = importlib.util.spec_from_file_location(VENDORED_SIX, path)
    if spec is None or spec.loader is None:
        return
    six = importlib.util.module_from_spec(spec)
    sys.modules[VENDORED_SIX] = six
    try:
        spec.loader.exec_module(six)
    except BaseException:
        del sys.modules[VENDORED_SIX]
        raise
    _modernise(six._SixMetaPathImporter)


def _modernise(importer: Any) -> None:
    """six 1.16's own additions to its importer (PEP 451 loaders)."""

    def find_spec(
        self: Any, fullname: str, path: object = None, target: object = None
    ) -> ModuleSpec | None:
        if fullname in self.known_modules:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self: Any, spec: ModuleSpec) -> ModuleType:
        module: ModuleType = self.load_module(spec.name)
        return module

    def exec_module(self: Any, module: ModuleType) -> None:
        pass

    for name, function in (
        ("find_spec", find_spec),
        ("create_module", create_module),
        ("exec_module", exec_module),
    ):
        if not hasattr(importer, name):
            setattr(importer, name, function)
