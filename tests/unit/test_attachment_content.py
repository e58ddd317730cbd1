"""What a file is taken for, which names are refused or tidied, and how `Range` is read."""

from __future__ import annotations

import pytest

from opsflow.attachments.content import (
    BadName,
    clean_filename,
    content_disposition,
    detect_type,
    served_type,
)
from opsflow.attachments.service import RangeNotSatisfiable, byte_range


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"\x1f\x8b\x08\x00", "application/gzip"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00" * 257 + b"ustar\x0000", "application/x-tar"),
        (b"\x7fELF\x02\x01", "application/x-executable"),
        (b"  <!DOCTYPE html><p>hi", "text/html"),
        (b"\xef\xbb\xbf<html>", "text/html"),
        (b"<script>alert(1)</script>", "text/html"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        (b'<?xml version="1.0"?>\n<svg/>', "image/svg+xml"),
        (b'<?xml version="1.0"?>\n<feed/>', "application/xml"),
        (b'{"a": 1}', "application/json"),
        (b"2026-12-06 ERROR something broke\n", "text/plain"),
        ("héllo wörld".encode(), "text/plain"),
        ("日本語".encode()[:-1], "text/plain"),  # a character cut at the end
        (b"\x00\x01\x02binary", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_detect_type(head: bytes, expected: str) -> None:
    assert detect_type(head) == expected


@pytest.mark.parametrize(
    "kind", ["text/html", "image/svg+xml", "application/xml", "text/javascript"]
)
def test_active_types_are_served_as_bytes(kind: str) -> None:
    assert served_type(kind) == "application/octet-stream"


def test_passive_types_keep_their_type() -> None:
    assert served_type("image/png") == "image/png"
    assert served_type("text/plain") == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        None,
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "nul\x00.txt",
        "tab\there",
        "bell\x07",
        "del\x7f",
        "c1\x85",
        "rtl\u202etxt.exe",
        "...",
    ],
)
def test_refused_names(name: str | None) -> None:
    with pytest.raises(BadName):
        clean_filename(name)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("report.pdf", "report.pdf"),
        ("  spaced.txt  ", "spaced.txt"),
        (".hidden", "hidden"),
        ('a"b<c>d:e|f?g*h;i.txt', "a_b_c_d_e_f_g_h_i.txt"),
        ("cafe\u0301.txt", "café.txt"),  # NFC
        ("Ünïcödé ✓.log", "Ünïcödé ✓.log"),
    ],
)
def test_tidied_names(raw: str, stored: str) -> None:
    assert clean_filename(raw) == stored


def test_long_names_keep_their_extension_within_255_bytes() -> None:
    name = clean_filename("é" * 300 + ".tar.gz")
    assert name.endswith(".gz")
    assert len(name.encode()) <= 255
    name.encode().decode("utf-8")  # never cut inside a character


def test_content_disposition_has_a_fallback_and_the_exact_name() -> None:
    assert content_disposition('résumé "final".pdf') == (
        'attachment; filename="r_sum_ _final_.pdf"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
    )


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=90-1000", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes = 5-6", 100, (5, 6)),
        ("bytes=0-0,5-6", 100, None),  # several ranges: the whole file
        ("items=0-9", 100, None),
        ("bytes=9-0", 100, None),
        ("bytes=abc", 100, None),
        ("bytes=-", 100, None),
        ("bytes=1-x", 100, None),
    ],
)
def test_byte_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        byte_range(header, size)
    assert caught.value.headers["Content-Range"] == f"bytes */{size}"
