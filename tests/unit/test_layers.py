"""The package's layers, read from its import statements: data flows one way, from a channel
through the domain to the database, and the composition root alone sees every part."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "soap_service"

# What each part of the package must not import (its own or a library's modules).
FORBIDDEN = {
    "domain": (
        "soap_service.persistence",
        "soap_service.soap",
        "soap_service.web",
        "soap_service.delivery",
        "soap_service.container",
        "sqlalchemy",
        "spyne",
        "aiosmtpd",
        "jinja2",
    ),
    "persistence": (
        "soap_service.soap",
        "soap_service.web",
        "soap_service.delivery",
        "soap_service.container",
    ),
    "delivery": (
        "soap_service.persistence",
        "soap_service.soap",
        "soap_service.web",
        "soap_service.container",
        "soap_service.server",
    ),
    "soap": ("soap_service.persistence", "soap_service.web", "soap_service.container"),
    "web": ("soap_service.persistence", "soap_service.container", "soap_service.delivery"),
    "smtp": (
        "soap_service.persistence",
        "soap_service.soap",
        "soap_service.web",
        "soap_service.delivery",
        "soap_service.container",
        "sqlalchemy",
        "spyne",
    ),
}
# Libraries that belong to one part only.
ONLY_IN = {
    "cryptography": ("crypto.py",),
    "sqlalchemy": ("persistence/",),
    "alembic": ("persistence/",),
    "spyne": ("soap/",),
    "gunicorn": ("server.py",),
    # The SMTP channel; the development mail sink is a small server of its own.
    "aiosmtpd": ("smtp/", "devmail.py"),
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(part: str) -> None:
    crossings = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / part).rglob("*.py"))
        for name in sorted(imports_of(path))
        if any(is_within(name, forbidden) for forbidden in FORBIDDEN[part])
    ]
    assert crossings == []


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_a_library_is_used_in_its_own_place_only(library: str) -> None:
    places = ONLY_IN[library]
    strays = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if any(is_within(name, library) for name in imports_of(path))
        and not str(path.relative_to(PACKAGE)).startswith(places)
    ]
    assert strays == []


def test_the_checks_see_imports_inside_functions_too(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text("def f():\n    from soap_service.persistence import store\n")
    assert imports_of(module) == {"soap_service.persistence"}
