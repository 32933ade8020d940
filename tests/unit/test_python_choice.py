"""The Makefile's choice of Python: the newest supported one it finds, on the PATH or where
pyenv and uv install them, and a plain refusal when there is none.

Each case runs the real Makefile with `make` in a made-up world: a PATH holding only stand-in
interpreters (shell scripts that answer like Python would) and the few tools the Makefile's
search uses, and a HOME with stand-in pyenv and uv installations.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


class World:
    def __init__(self, folder: Path) -> None:
        self.home = folder / "home"
        self.bin = folder / "bin"
        self.venv = folder / "venv"  # never made: the cases stop before, or are dry runs
        self.bin.mkdir(parents=True)
        self.home.mkdir()
        for tool in ("ls", "sort"):
            found = shutil.which(tool)
            assert found is not None
            (self.bin / tool).symlink_to(found)

    def python(self, path: Path, version: str, runs: bool = True) -> Path:
        """A stand-in that prints its version for the Makefile's question, or fails like a
        pyenv shim for a version pyenv has not selected."""
        path.parent.mkdir(parents=True, exist_ok=True)
        body = f'case "$2" in "") exit 0;; *) echo {version};; esac' if runs else "exit 127"
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    def on_path(self, version: str, runs: bool = True) -> Path:
        return self.python(self.bin / f"python{version}", version, runs)

    def pyenv(self, release: str) -> Path:
        version = ".".join(release.split(".")[:2])
        path = self.home / ".pyenv" / "versions" / release / "bin" / f"python{version}"
        return self.python(path, version)

    def uv(self, release: str) -> Path:
        version = ".".join(release.split(".")[:2])
        folder = f"cpython-{release}-linux-x86_64-gnu"
        path = self.home / ".local" / "share" / "uv" / "python" / folder / "bin"
        return self.python(path / f"python{version}", version)

    def make(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert MAKE is not None
        return subprocess.run(
            [MAKE, "--no-print-directory", "-C", str(ROOT), *args],
            # Nothing from the caller's make (MAKEFLAGS may carry PYTHON=) or pyenv.
            env={"PATH": str(self.bin), "HOME": str(self.home)},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def chosen(self) -> str:
        """The interpreter `make install` would use, from its dry run."""
        result = self.make("-n", "install", f"VENV={self.venv}")
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith('echo "Python')]
        assert len(lines) == 1, result.stdout
        return lines[0].removeprefix('echo "').removesuffix('"')


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_the_newest_supported_version_wins_wherever_it_is(world: World) -> None:
    world.on_path("3.11")
    world.on_path("3.12")
    newest = world.pyenv("3.13.0")
    world.on_path("3.14")  # not supported: passed over
    assert world.chosen() == f"Python 3.13: {newest}"


def test_a_pyenv_shim_that_does_not_answer_is_passed_over(world: World) -> None:
    world.on_path("3.13", runs=False)  # pyenv's shim while 3.11 is selected
    world.pyenv("3.13.0")
    newest_patch = world.pyenv("3.13.10")
    world.on_path("3.11")
    assert world.chosen() == f"Python 3.13: {newest_patch}"


def test_uv_installed_pythons_are_found(world: World) -> None:
    world.on_path("3.11")
    found = world.uv("3.12.8")
    assert world.chosen() == f"Python 3.12: {found}"


def test_python_named_on_the_command_line_is_used(world: World) -> None:
    world.pyenv("3.13.0")
    named = world.on_path("3.11")
    result = world.make("-n", "install", f"PYTHON={named}", f"VENV={world.venv}")
    assert f'echo "Python 3.11: {named}"' in result.stdout.splitlines()


def test_no_supported_python_is_refused_plainly(world: World) -> None:
    world.on_path("3.10")
    world.pyenv("3.14.0")
    result = world.make("install", f"VENV={world.venv}")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "soap-service needs Python 3.11, 3.12 or 3.13: none was found. Install one "
        '(README.md, "Which Python") or name it: make PYTHON=/path/to/python3.13'
    )
    assert not world.venv.exists()


def test_an_unsupported_python_named_is_refused_with_its_version(world: World) -> None:
    old = world.on_path("3.10")
    result = world.make("install", f"PYTHON={old}", f"VENV={world.venv}")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(
        f"soap-service needs Python 3.11, 3.12 or 3.13: {old} is 3.10. Install one"
    )


def test_other_pythons_are_the_supported_ones_not_chosen(world: World) -> None:
    world.pyenv("3.13.0")
    twelve = world.pyenv("3.12.1")
    result = world.make("-n", "test-other-pythons", "REQUIRE_ALL_PYTHONS=1")
    # 3.12 is found and its tests run in their own environment (a dry run shows them);
    # 3.11 is missing, which fails the run when all are required.
    assert f"test-core PYTHON={twelve} VENV=.venv-3.12" in result.stdout
    assert f"{world.home}/.pyenv/versions/3.13.0" not in result.stdout
    assert result.stderr.splitlines()[0] == "Python 3.11 not found: its tests were not run"
    assert result.returncode == 2


def test_other_pythons_not_found_are_skipped_unless_all_are_required(world: World) -> None:
    world.pyenv("3.13.0")
    result = world.make("-n", "test-other-pythons")
    assert result.returncode == 0, result.stderr
    skipped = [line for line in result.stdout.splitlines() if line.endswith("were not run")]
    assert skipped == [
        "Python 3.12 not found: its tests were not run",
        "Python 3.11 not found: its tests were not run",
    ]


@pytest.mark.parametrize(
    ("found", "why"),
    [
        (lambda world: world.on_path("3.11"), "choose a newer one (make PYTHON=...)"),
        (lambda world: world.pyenv("3.13.0"), "none was found"),
    ],
    ids=["chosen-is-the-oldest", "no-oldest"],
)
def test_bench_pythons_is_refused_before_the_environment_is_touched(
    world: World, found: Callable[[World], Path], why: str
) -> None:
    found(world)
    result = world.make("bench-pythons", f"VENV={world.venv}")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"make bench-pythons compares with Python 3.11: {why}"
    assert not world.venv.exists()
