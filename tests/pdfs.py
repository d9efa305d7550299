"""Real PDFs for tests, written byte by byte (catalog, page tree, pages with a text stream, Helvetica, xref)."""

import zlib
from io import BytesIO

from pypdf import PdfReader, PdfWriter


def pdf_bytes(*pages: list[str], title: str | None = None, deflate: bool = False) -> bytes:
    """A PDF with one page per list of lines (an empty list is a blank page) and an optional /Title; `deflate`
    compresses the page streams (FlateDecode), so the text can be far larger than the file."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the page numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids: list[int] = []
    for lines in pages:
        shown = b"".join(b"(" + _escaped(line) + b") Tj 0 -16 Td " for line in lines)
        stream = b"BT /F1 12 Tf 72 712 Td " + shown + b"ET" if lines else b""
        stream, flate = (zlib.compress(stream), b" /Filter /FlateDecode") if deflate else (stream, b"")
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), flate) + stream + b"\nendstream")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % len(objects)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = b""
    if title is not None:
        objects.append(b"<< /Title (" + _escaped(title) + b") >>")
        info = b" /Info %d 0 R" % len(objects)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def encrypted(data: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    """`data` re-written by pypdf with AES-256 encryption; an empty user password opens it without asking."""
    writer = PdfWriter(clone_from=PdfReader(BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-256")
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _escaped(text: str) -> bytes:
    return text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
