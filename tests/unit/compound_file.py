"""A minimal OLE2 compound file writer (MS-CFB version 3), for tests: olefile only reads.

Builds a root storage holding one child (a storage or an empty stream) and, optionally, a
stream with data, so the policy can be tested on files Office and olefile really parse.
"""

from __future__ import annotations

import struct

SECTOR = 512
FREE, END_OF_CHAIN, FAT_SECTOR, NO_STREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
STORAGE, STREAM, ROOT = 1, 2, 5


def _entry(
    name: str,
    kind: int,
    *,
    left: int = NO_STREAM,
    right: int = NO_STREAM,
    child: int = NO_STREAM,
    start: int = END_OF_CHAIN,
    size: int = 0,
) -> bytes:
    encoded = (name + "\0").encode("utf-16-le")
    return (
        encoded.ljust(64, b"\0")
        + struct.pack("<HBB", len(encoded), kind, 1)  # length, type, colour black
        + struct.pack("<III", left, right, child)
        + b"\0" * 16  # CLSID
        + struct.pack("<I", 0)  # state bits
        + b"\0" * 16  # creation and modification times
        + struct.pack("<IQ", start, size)
    )


def compound_file(names: list[tuple[str, int]], text: bytes = b"") -> bytes:
    """Children of the root as (name, STORAGE or STREAM); `text` becomes a 4 KiB+ stream
    named "WordDocument" so content is not in the mini stream."""
    children = list(names)
    data_sectors = 0
    if text:
        text = text.ljust(4096, b"\0")
        data_sectors = -(-len(text) // SECTOR)
        children.append(("WordDocument", STREAM))
    # Root's children as a chain of right siblings (a degenerate but valid red-black tree).
    entries = [_entry("Root Entry", ROOT, child=1 if children else NO_STREAM)]
    for index, (name, kind) in enumerate(children, start=1):
        right = index + 1 if index < len(children) else NO_STREAM
        if name == "WordDocument" and text:
            entries.append(_entry(name, kind, right=right, start=2, size=len(text)))
        else:
            entries.append(_entry(name, kind, right=right))
    while len(entries) % 4:
        entries.append(b"\0" * 64 + struct.pack("<HBB", 0, 0, 0) + b"\xff" * 12 + b"\0" * 48)
    directory = b"".join(entries)
    directory_sectors = len(directory) // SECTOR

    # Layout: sector 0 FAT, sector 1.. directory, then data.
    fat = [FAT_SECTOR]
    for i in range(directory_sectors):
        fat.append(1 + i + 1 if i + 1 < directory_sectors else END_OF_CHAIN)
    first_data = 1 + directory_sectors
    for i in range(data_sectors):
        fat.append(first_data + i + 1 if i + 1 < data_sectors else END_OF_CHAIN)
    fat_sector = struct.pack(f"<{SECTOR // 4}I", *(fat + [FREE] * (SECTOR // 4 - len(fat))))

    if text:  # the stream starts after the directory
        directory = directory.replace(
            struct.pack("<IQ", 2, len(text)), struct.pack("<IQ", first_data, len(text))
        )
    header = (
        bytes.fromhex("d0cf11e0a1b11ae1")
        + b"\0" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + b"\0" * 6
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 0x1000, END_OF_CHAIN, 0, END_OF_CHAIN, 0)
        + struct.pack("<109I", 0, *([FREE] * 108))
    )
    assert len(header) == SECTOR
    return header + fat_sector + directory + text.ljust(data_sectors * SECTOR, b"\0")
