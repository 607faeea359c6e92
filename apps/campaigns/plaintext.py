"""The plain-text part of an email, made from its HTML.

Paragraphs and headings become blank-line-separated blocks, list items "* item",
table rows lines with their cells two spaces apart, links "[text](url)", images
their alt text; <head>, styles and scripts are dropped. The HTML is parsed by
selectolax (the Lexbor parser, in C): this runs once for every email a broadcast
sends, so it must cost tens of microseconds, not milliseconds.
"""

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

SKIPPED = {"head", "style", "script", "title", "template", "noscript", "-comment"}
# Separated from what is around them by a blank line.
PARAGRAPHS = {
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "ul",
    "ol",
    "blockquote",
    "pre",
    "hr",
    "dl",
}
# On lines of their own.
BLOCKS = {
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "center",
    "form",
    "address",
    "figure",
    "figcaption",
    "tr",
    "dt",
    "dd",
    "tbody",
    "thead",
    "tfoot",
}
CELLS = {"td", "th"}
_SPACES = re.compile(r"\s+")


class _Break(int):
    """How many line ends a block boundary asks for (1: a new line, 2: a blank)."""


def html_to_text(html: str) -> str:
    tree = LexborHTMLParser(html)
    root = tree.body or tree.root
    if root is None:
        return ""
    pieces: list = []
    _walk(root, pieces)
    return _join(pieces)


def _walk(node: LexborNode, out: list) -> None:
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            text = _SPACES.sub(" ", child.text_content or "")
            if text:
                out.append(text)
        elif tag in SKIPPED:
            continue
        elif tag == "br":
            out.append(_Break(1))
        elif tag == "img":
            alt = (child.attributes.get("alt") or "").strip()
            if alt:
                out.append(alt)
        elif tag == "a":
            out.append(_link(child))
        elif tag == "li":
            out.append(_Break(1))
            out.append("* ")
            _walk(child, out)
            out.append(_Break(1))
        elif tag in CELLS:
            cell: list = []
            _walk(child, cell)
            out.append(" ".join(_join(cell).split()) + "  ")
        elif tag in PARAGRAPHS:
            out.append(_Break(2))
            _walk(child, out)
            out.append(_Break(2))
        elif tag in BLOCKS:
            out.append(_Break(1))
            _walk(child, out)
            out.append(_Break(1))
        else:
            _walk(child, out)


def _link(node: LexborNode) -> str:
    inner: list = []
    _walk(node, inner)
    text = " ".join(_join(inner).split())
    href = (node.attributes.get("href") or "").strip()
    if not href or href.startswith("#") or href == text:
        return text or href
    return f"[{text}]({href})" if text else href


def _join(pieces: list) -> str:
    """Text pieces and breaks into lines: runs of breaks become the largest of
    them, spaces at the ends of lines go, and no more than one blank line."""
    lines: list[str] = []
    current: list[str] = []
    pending = 0
    for piece in pieces:
        if isinstance(piece, _Break):
            pending = max(pending, piece)
            continue
        if pending:
            if not piece.strip():
                continue  # the whitespace between two blocks
            line = "".join(current).strip()
            if line or lines:
                lines.append(line)
                if pending == 2:
                    lines.append("")
            current = []
            pending = 0
        current.append(piece)
    lines.append("".join(current).strip())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
