"""Which attachments are refused: executables, macros and scripts, by name and by content."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from soap_service.domain.attachment_policy import (
    extension_of,
    refused_by_content,
    refused_by_name,
)
from tests.unit.compound_file import STORAGE, STREAM, compound_file

OLE2 = bytes.fromhex("d0cf11e0a1b11ae1")
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"


def pe_executable(header_offset: int = 0x80, signature: bytes = b"PE\0\0") -> bytes:
    """A minimal MZ stub whose e_lfanew (at 0x3C) points at a PE signature."""
    content = bytearray(b"MZ" + b"\x90\x00" * 30)  # 62 bytes of DOS header
    content += b"\0" * (header_offset + 0x40 - len(content))
    struct.pack_into("<I", content, 0x3C, header_offset)
    content[header_offset : header_offset + len(signature)] = signature
    return bytes(content)


def zip_of(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, b"content of " + name.encode())
    return buffer.getvalue()


# By name.


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        ("setup.exe", "exe"),
        ("SETUP.EXE", "exe"),
        ("payslip.pdf.exe", "exe"),
        ("x.exe. ", "exe"),
        ("x.exe...", "exe"),
        ("x.exe . .", "exe"),
        ("report.docm", "docm"),
        ("budget.XLSM", "xlsm"),
        ("invoice.js", "js"),
        ("run.vbs", "vbs"),
        ("install.ps1", "ps1"),
        ("link.lnk", "lnk"),
        ("disk.iso", "iso"),
        (".exe", "exe"),
    ],
)
def test_blocked_extensions_are_refused(filename: str, extension: str) -> None:
    assert refused_by_name(filename) == f"files of type .{extension} are not allowed"


@pytest.mark.parametrize(
    "filename",
    ["payslip.pdf", "payslip.exe.pdf", "README", "archive.zip", "letter.docx", "photo.JPG", "exe"],
)
def test_harmless_names_are_accepted(filename: str) -> None:
    assert refused_by_name(filename) is None


def test_extension_of() -> None:
    assert extension_of("Payslip.PDF") == "pdf"
    assert extension_of("a.tar.gz") == "gz"
    assert extension_of("noextension") == ""
    assert extension_of("x.exe. ") == "exe"


# By content: programs.


def test_a_pe_executable_named_pdf_is_refused() -> None:
    content = pe_executable()
    assert content[:2] == b"MZ"
    assert content[0x80:0x84] == b"PE\0\0"
    assert refused_by_content(content) == "its content is a Windows executable"


@pytest.mark.parametrize("signature", [b"NE", b"LE", b"LX"])
def test_older_windows_executable_formats_are_refused(signature: bytes) -> None:
    content = pe_executable(signature=signature)
    assert refused_by_content(content) == "its content is a Windows executable"


def test_an_mz_file_whose_header_offset_points_at_no_signature_is_accepted() -> None:
    # A DOS-style header with no PE/NE/LE/LX header behind it does not run on Windows.
    assert refused_by_content(pe_executable(signature=b"XX\0\0")) is None


def test_an_mz_file_whose_header_offset_points_outside_the_file_is_accepted() -> None:
    content = bytearray(pe_executable())
    struct.pack_into("<I", content, 0x3C, 0xFFFF_FFF0)
    assert refused_by_content(bytes(content)) is None


def test_text_starting_with_mz_long_enough_to_have_a_header_is_accepted() -> None:
    text = b"MZ Bank AG\nStatement of account for May 2024\n" + b"Balance: CHF 1'234.50\n" * 3
    assert len(text) >= 0x40
    assert refused_by_content(text) is None


def test_content_starting_with_mz_shorter_than_a_dos_header_is_refused() -> None:
    # Deliberate (see _has_windows_executable_header): under 0x40 bytes there is no room
    # for a header offset, so an MZ file that short is treated as a program stub.
    assert refused_by_content(b"MZ Bank AG statement") == "its content is a Windows executable"


def test_elf_is_refused() -> None:
    elf = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 56
    assert refused_by_content(elf) == "its content is a Linux executable"


@pytest.mark.parametrize("magic", ["feedface", "feedfacf", "cefaedfe", "cffaedfe", "cafebabe"])
def test_mach_o_and_java_classes_are_refused(magic: str) -> None:
    content = bytes.fromhex(magic) + b"\0" * 60
    assert refused_by_content(content) == "its content is a macOS executable or Java class"


@pytest.mark.parametrize("script", [b"#!/bin/sh\nrm -rf ~\n", b"#!/usr/bin/env python3\n"])
def test_scripts_with_a_shebang_are_refused(script: bytes) -> None:
    assert refused_by_content(script) == "its content is a script"


def test_a_windows_shortcut_is_refused() -> None:
    shortcut = bytes.fromhex("4c0000000114020000000000c000000000000046") + b"\0" * 60
    assert refused_by_content(shortcut) == "its content is a Windows shortcut"


# By content: macros in Office documents.


def test_an_excel_file_with_a_vba_project_is_refused() -> None:
    content = compound_file([("_VBA_PROJECT_CUR", STORAGE), ("Workbook", STREAM)])
    assert refused_by_content(content) == "its content is an Office document with macros"


def test_a_word_file_with_a_macros_storage_is_refused() -> None:
    content = compound_file([("Macros", STORAGE)], text=b"plain text")
    assert refused_by_content(content) == "its content is an Office document with macros"


def test_a_word_file_without_macros_is_accepted() -> None:
    assert refused_by_content(compound_file([("1Table", STREAM)], text=b"text")) is None


def test_a_word_file_whose_text_mentions_macros_is_accepted() -> None:
    # Old Word files keep their text in UTF-16-LE: only the directory may decide.
    text = "Please enable Macros and _VBA_PROJECT".encode("utf-16-le")
    assert refused_by_content(compound_file([], text=text)) is None


def test_a_truncated_compound_file_is_not_an_error() -> None:
    assert refused_by_content(OLE2 + b"\0" * 100) is None


def test_a_word_document_with_a_vba_project_is_refused() -> None:
    content = zip_of("[Content_Types].xml", "word/document.xml", "word/vbaProject.bin")
    assert refused_by_content(content) == "its content is an Office document with macros"


def test_an_opendocument_file_with_basic_macros_is_refused() -> None:
    content = zip_of("mimetype", "content.xml", "Basic/Standard/Module1.xml")
    assert refused_by_content(content) == "its content is an OpenDocument file with macros"


def test_a_zip_containing_a_program_is_refused() -> None:
    content = zip_of("readme.txt", "tools/run.exe")
    assert refused_by_content(content) == "it is an archive that contains a program or script"


def test_a_plain_zip_is_accepted() -> None:
    assert refused_by_content(zip_of("a.txt")) is None


def test_a_word_document_without_macros_is_accepted() -> None:
    content = zip_of("[Content_Types].xml", "word/document.xml", "docProps/core.xml")
    assert refused_by_content(content) is None


def test_a_broken_zip_is_accepted_as_unreadable() -> None:
    assert refused_by_content(b"PK\x03\x04" + b"\xff" * 200) is None


# Harmless content.


@pytest.mark.parametrize(
    "content",
    [
        PDF,
        b"\x89PNG\r\n\x1a\n" + b"\0" * 60,
        b"Hello, this is a plain text payslip.\n",
        b"M",
        b"#",
        b"\xef\xbb\xbf#!not at the start",
    ],
)
def test_harmless_content_is_accepted(content: bytes) -> None:
    assert refused_by_content(content) is None
