"""PDF to text for ingest_path: the text layer page by page (pypdf), and a title; or why the file is skipped.

Bounded: at most MAX_PAGES pages, and the text at most the caller's byte limit (like decompressed text). PDFs with
an empty user password (restricting only printing or copying) are read; ones that need a password are skipped, as
are damaged ones and scans without a text layer. Pure CPU on bytes already read: callers run it in a worker thread
with the file read.
"""

from dataclasses import dataclass
from io import BytesIO

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from mcp_servers.aidb.html import MAX_TITLE_CHARS

MAX_PAGES = 2000
ENCRYPTED = "PDF is encrypted"
DAMAGED = "PDF could not be read"
NO_TEXT = "PDF has no text layer"


@dataclass(frozen=True, slots=True)
class PdfText:
    """A PDF's text (pages separated by blank lines), its size in UTF-8 bytes, and its title if it has one."""

    text: str
    size_bytes: int
    title: str | None


def pdf_text(data: bytes, max_bytes: int) -> PdfText | str:
    """The text of the PDF in `data`, or the reason it is skipped."""
    try:
        return _extract(data, max_bytes)
    except (FileNotDecryptedError, DependencyError):
        # Encrypted with a password we do not have, or with an algorithm no installed crypto library provides.
        return ENCRYPTED
    except Exception:
        # Deliberately broad, around the parse only: pypdf raises its own PdfReadError/PdfStreamError/
        # LimitReachedError on most damage, but hostile or broken files also surface as ValueError, KeyError,
        # TypeError, AttributeError, IndexError, RecursionError, zlib.error, struct.error... Any of them means
        # "this file cannot be read"; one bad PDF must never fail the whole ingest.
        return DAMAGED


def _extract(data: bytes, max_bytes: int) -> PdfText | str:
    reader = PdfReader(BytesIO(data))
    # The reader has already tried the empty user password; an owner-only password leaves the text readable.
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        return ENCRYPTED
    if len(reader.pages) > MAX_PAGES:
        return f"PDF has more than {MAX_PAGES} pages"
    pages: list[str] = []
    size = 0
    for page in reader.pages:
        text = "\n".join(line.rstrip() for line in _clean(page.extract_text()).splitlines()).strip()
        if not text:
            continue
        size += len(text.encode("utf-8")) + 2
        if size > max_bytes:
            return f"larger than the {max_bytes} byte limit once extracted"
        pages.append(text)
    if not pages:
        return NO_TEXT
    text = "\n\n".join(pages)
    return PdfText(text=text, size_bytes=len(text.encode("utf-8")), title=_title(reader) or _first_line(text))


def _clean(text: str) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogates (fonts without a Unicode map yield odd code points)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _title(reader: PdfReader) -> str | None:
    metadata = reader.metadata
    title = metadata.title if metadata is not None else None
    return _one_line(_clean(title)) if isinstance(title, str) else None


def _first_line(text: str) -> str | None:
    return next((line for line in map(_one_line, text.splitlines()) if line), None)


def _one_line(text: str) -> str | None:
    line = " ".join(text.split())[:MAX_TITLE_CHARS]
    return line or None
