"""What a file is (from its first bytes, not its name), what it may be served as, and
which file names are acceptable."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_NAME_BYTES = 255

# (offset, signature, type): checked in order against the first bytes.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"PK\x05\x06", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
    (0, b"BZh", "application/x-bzip2"),
    (0, b"\xfd7zXZ\x00", "application/x-xz"),
    (0, b"(\xb5/\xfd", "application/zstd"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"MZ", "application/vnd.microsoft.portable-executable"),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3"),
    (257, b"ustar", "application/x-tar"),
)
_HTML_MARKERS = (
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<body",
    b"<script",
    b"<iframe",
    b"<style",
    b"<title",
    b"<meta",
    b"<a ",
    b"<img",
    b"<div",
    b"<table",
    b"<!--",
)
# Binary control bytes: their presence means "not text".
_BINARY = (
    set(range(0x00, 0x09)) | {0x0B, 0x0E, 0x0F} | set(range(0x10, 0x1B)) | set(range(0x1C, 0x20))
)
# Types a browser would render or run: never served as themselves.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "image/svg+xml",
        "application/xml",
        "text/xml",
        "application/xhtml+xml",
        "text/javascript",
        "application/javascript",
    }
)


def _is_text(head: bytes) -> bool:
    if any(byte in _BINARY for byte in head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(head) - 3 and exc.reason.startswith("unexpected end")
    return True


def detect_type(head: bytes) -> str:
    """The MIME type of a file whose first bytes are `head` (a few KiB)."""
    for offset, signature, kind in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return kind
    if head[4:12] in {b"ftypisom", b"ftypmp42", b"ftypMSNV"}:
        return "video/mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if not head:
        return "application/octet-stream"
    if not _is_text(head):
        return "application/octet-stream"
    lowered = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lowered.startswith(_HTML_MARKERS):
        return "text/html"
    if b"<svg" in lowered[:1024] and lowered.startswith((b"<svg", b"<?xml", b"<!doctype svg")):
        return "image/svg+xml"
    if lowered.startswith(b"<?xml"):
        return "application/xml"
    if lowered.startswith((b"{", b"[")) and lowered.rstrip().endswith((b"}", b"]")):
        return "application/json"
    return "text/plain"


def served_type(content_type: str) -> str:
    """The Content-Type a download is answered with: what a browser could render or run
    as a page (HTML, SVG, XML, scripts) goes out as opaque bytes."""
    if content_type in ACTIVE_TYPES:
        return "application/octet-stream"
    if content_type == "text/plain":
        return "text/plain; charset=utf-8"
    return content_type


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_RESERVED = re.compile(r'[<>:"|?*;]')


class BadName(ValueError):
    """A file name that is refused (not merely tidied)."""


def clean_filename(raw: str | None) -> str:
    """The stored name of an uploaded file.

    Refused: empty names, names with control or bidirectional-override characters, path
    separators or `..`. Tidied: Unicode NFC, surrounding spaces and leading dots removed,
    characters that are special on common file systems or in headers replaced with `_`,
    and the name shortened to 255 UTF-8 bytes, keeping its extension.
    """
    if raw is None or not raw.strip():
        raise BadName("the file name is empty")
    name = unicodedata.normalize("NFC", raw)
    if _CONTROL.search(name):
        raise BadName("the file name contains control characters")
    if "/" in name or "\\" in name:
        raise BadName("the file name contains a path separator")
    if name.strip() in {".", ".."}:
        raise BadName("the file name is a path traversal")
    name = _RESERVED.sub("_", name).strip().lstrip(".").strip()
    if not name:
        raise BadName("the file name is empty once tidied")
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, dot, extension = name.rpartition(".")
        if not dot or len(extension.encode()) > 16:
            stem, extension = name, ""
        suffix = f".{extension}" if extension else ""
        budget = MAX_NAME_BYTES - len(suffix.encode())
        stem = stem.encode()[:budget].decode("utf-8", "ignore")
        name = stem + suffix
    return name


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
