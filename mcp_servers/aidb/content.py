"""Content normalisation and fingerprints: the same text always hashes the same, whatever its line endings."""

import hashlib
import unicodedata

# Zero-width and BOM characters change the hash without changing what a reader sees.
_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060"))


def normalize_content(text: str) -> str:
    """NFC text with LF line endings, no trailing spaces on lines, no leading/trailing blank lines."""
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def content_hash(normalized: str) -> str:
    """Hex SHA-256 of the normalised text's UTF-8 bytes."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def guess_title(normalized: str, fallback: str = "untitled") -> str:
    """The first markdown heading or first non-empty line, cut to 200 characters."""
    for line in normalized.split("\n"):
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return stripped[:200]
    return fallback[:200]
