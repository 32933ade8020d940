"""Which attachments are refused: executables, macros and scripts, by name and by content.

The name alone is not enough (a PE executable renamed payslip.pdf), and the content alone
is not enough (a script has no magic number), so both are checked. Fault messages name
the attachment by its position and the kind of content, never by its bytes.
"""

from __future__ import annotations

import io
import struct
import zipfile

import olefile

# Extensions of programs, scripts, macro-enabled documents, shortcuts and disk images.
BLOCKED_EXTENSIONS = frozenset(
    """
    exe com scr pif bat cmd msi msp mst msc dll cpl sys drv ocx
    js jse mjs vbs vbe vb wsf wsh wsc ws ps1 ps1xml ps2 ps2xml psc1 psc2 psm1 psd1
    hta jar class sh bash csh ksh zsh command py pyw pl rb php
    app lnk reg inf scf gadget application appref-ms chm url
    docm dotm xlsm xltm xlam pptm potm ppsm ppam sldm
    iso img vhd vhdx
    """.split()
)

_OLE2 = bytes.fromhex("d0cf11e0a1b11ae1")
_LNK = bytes.fromhex("4c0000000114020000000000c000000000000046")
_MACH_O = {
    bytes.fromhex(magic) for magic in ("feedface", "feedfacf", "cefaedfe", "cffaedfe", "cafebabe")
}
# Storages that hold VBA code in Word, Excel and PowerPoint binary files.
_OLE2_MACRO_STORAGES = frozenset({"macros", "_vba_project_cur", "vba", "_vba_project"})


def extension_of(filename: str) -> str:
    # Windows ignores trailing dots and spaces: "payslip.exe. " runs as an .exe.
    name = filename.rstrip(". ").lower()
    return name.rsplit(".", 1)[-1] if "." in name else ""


def refused_by_name(filename: str) -> str | None:
    extension = extension_of(filename)
    if extension in BLOCKED_EXTENSIONS:
        return f"files of type .{extension} are not allowed"
    return None


def refused_by_content(content: bytes) -> str | None:
    """The kind of forbidden content found, or None if the bytes look harmless."""
    head = content[:64]
    if head.startswith(b"MZ") and _has_windows_executable_header(content):
        return "its content is a Windows executable"
    if head.startswith(b"\x7fELF"):
        return "its content is a Linux executable"
    if head[:4] in _MACH_O:
        return "its content is a macOS executable or Java class"
    if head.startswith(b"#!"):
        return "its content is a script"
    if head.startswith(_LNK):
        return "its content is a Windows shortcut"
    if head.startswith(_OLE2) and _ole2_has_macros(content):
        return "its content is an Office document with macros"
    if head.startswith(b"PK\x03\x04"):
        return _refused_archive_member(content)
    return None


def _has_windows_executable_header(content: bytes) -> bool:
    if len(content) < 0x40:
        return True  # too short for anything but a DOS stub; not a document either
    (offset,) = struct.unpack_from("<I", content, 0x3C)
    signature = content[offset : offset + 4]
    return signature == b"PE\0\0" or signature[:2] in (b"NE", b"LE", b"LX")


def _ole2_has_macros(content: bytes) -> bool:
    """Read the compound file's directory (olefile) rather than searching the bytes: an
    old Word document's text is UTF-16 too, and may well contain the word "Macros"."""
    try:
        with olefile.OleFileIO(content) as compound:
            entries = compound.listdir(streams=True, storages=True)
    except (OSError, ValueError, IndexError, struct.error):
        return False  # not a readable compound file: Office cannot open it either
    return any(part.lower() in _OLE2_MACRO_STORAGES for entry in entries for part in entry)


def _refused_archive_member(content: bytes) -> str | None:
    """Look inside ZIP containers (Office, OpenDocument, plain archives), one level deep."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error):
        return None  # not a readable archive: nothing inside it can be opened either
    for name in names:
        lowered = name.lower()
        if lowered.endswith("vbaproject.bin"):
            return "its content is an Office document with macros"
        if lowered.startswith(("basic/", "scripts/")) and not lowered.endswith("/"):
            return "its content is an OpenDocument file with macros"
        member = lowered.rsplit("/", 1)[-1]
        if member and refused_by_name(member):
            return "it is an archive that contains a program or script"
    return None
