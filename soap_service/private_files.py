"""Files only the service's user may read (the master keyring, private keys), written
whole: each is written to a private temporary file first, then put in place in one step."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def create_exclusively(path: Path, content: bytes) -> None:
    """Create `path` with `content` unless another process created it first."""
    temp = _write_private_temp(path.parent, content)
    try:
        os.link(temp, path)  # fails if the file exists: two starting processes cannot race
    except FileExistsError:
        pass
    finally:
        temp.unlink()


def replace_atomically(path: Path, content: bytes) -> None:
    temp = _write_private_temp(path.parent, content)
    os.replace(temp, path)


def _write_private_temp(directory: Path, content: bytes) -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Path(name)
