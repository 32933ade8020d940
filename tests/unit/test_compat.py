"""The spyne compatibility layer (compat.py): on Python 3.11 it does nothing; the importer
methods it adds behave as six 1.16's (PEP 451), which Python 3.12 and newer call."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import pytest

from soap_service import compat


class OldImporter:
    """The shape of spyne 2.14's vendored six importer: find_module/load_module only."""

    def __init__(self) -> None:
        self.known_modules = {"pkg.six.moves": object()}
        self.loaded: list[str] = []

    def load_module(self, fullname: str) -> ModuleType:
        self.loaded.append(fullname)
        return ModuleType(fullname)


def test_the_importer_gains_pep_451_methods_that_load_its_known_modules() -> None:
    importer_class: Any = type("Importer", (OldImporter,), {})
    compat._modernise(importer_class)
    importer = importer_class()
    spec = importer.find_spec("pkg.six.moves")
    assert spec is not None and spec.name == "pkg.six.moves" and spec.loader is importer
    assert importer.find_spec("pkg.other") is None
    module = importer.create_module(spec)
    assert module.__name__ == "pkg.six.moves" and importer.loaded == ["pkg.six.moves"]
    assert importer.exec_module(module) is None


def test_methods_an_importer_has_already_are_kept() -> None:
    def find_spec(self: Any, fullname: str, path: object = None, target: object = None) -> str:
        return "its own"

    importer_class: Any = type("Importer", (OldImporter,), {"find_spec": find_spec})
    compat._modernise(importer_class)
    assert importer_class().find_spec("pkg.six.moves") == "its own"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="on 3.11 the layer must do nothing")
def test_on_python_3_11_spynes_own_six_is_left_as_it_is() -> None:
    import spyne.util.six as six

    compat.make_spyne_importable()
    assert not hasattr(six._SixMetaPathImporter, "find_spec")


def test_the_layer_is_needed_from_python_3_12_on() -> None:
    assert [compat.needed(version) for version in ((3, 11), (3, 12), (3, 13))] == [
        False,
        True,
        True,
    ]
