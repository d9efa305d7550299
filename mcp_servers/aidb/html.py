"""HTML to text for ingest_path: the words a reader sees, headings as markdown, and the page title.

Scripts, styles and other non-content elements are dropped; block elements end lines, so paragraphs and list
items stay apart and the chunker can split on headings. Standard library only (`html.parser`), pure CPU: callers
run it in a worker thread with the file read.
"""

import re
from dataclasses import dataclass
from html.parser import HTMLParser

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas"})
_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    ]
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")
MAX_TITLE_CHARS = 300


@dataclass(frozen=True, slots=True)
class HtmlText:
    """A page's text and its title (from <title>, else the first <h1>), if any."""

    text: str
    title: str | None


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.first_h1: list[str] = []
        self._skip_depth = 0
        self._in_title = False
        self._in_h1 = False
        self._seen_h1 = False
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIPPED:
            self._skip_depth += 1
            return
        if tag == "pre":
            self._pre_depth += 1
        if tag in _HEADINGS:
            self.parts.append("\n\n" + "#" * _HEADINGS[tag] + " ")
            self._in_h1 = tag == "h1" and not self._seen_h1
        elif tag in _BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
        if tag in _HEADINGS:
            self.parts.append("\n\n")
            if self._in_h1:
                self._in_h1, self._seen_h1 = False, True
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        if self._skip_depth:
            return
        text = data if self._pre_depth else _SPACES.sub(" ", data.replace("\n", " "))
        if self._in_h1:
            self.first_h1.append(text)
        self.parts.append(text)


def _one_line(parts: list[str]) -> str | None:
    line = " ".join("".join(parts).split())[:MAX_TITLE_CHARS]
    return line or None


def html_text(source: str) -> HtmlText:
    """The readable text of an HTML document and its title."""
    parser = _Extractor()
    parser.feed(source)
    parser.close()
    lines = [
        line.strip() if not line.startswith("    ") else line.rstrip() for line in "".join(parser.parts).split("\n")
    ]
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return HtmlText(text=text, title=_one_line(parser.title_parts) or _one_line(parser.first_h1))
