"""Rendering marketer-edited email templates, which are untrusted code.

Liquid, not Django templates: a template sees only the plain data put in its context
(no settings, no ORM objects, no attribute walks into Python), and the environment caps
loop iterations, output size and nesting so a template cannot hang a worker or fill its
memory. HTML output is autoescaped: traits and event properties are data, never markup.
"""

import datetime as dt
import functools
import re
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urljoin

import css_inline
from django.conf import settings
from liquid import Environment, Markup
from liquid.exceptions import LiquidError, LiquidSyntaxError
from liquid.tag import Tag

from .plaintext import html_to_text


class NotAllowedTag(Tag):
    """``{% include %}`` and ``{% render %}`` read other templates by name: there are
    none to read (each email template stands alone), and a name read from the
    context would let a template reach wherever a loader could. A parse error says
    so on the field, instead of a "template not found" at every render."""

    block = False

    def parse(self, stream):
        raise LiquidSyntaxError(
            f"includes are not allowed ({{% {self.name} %}}): each email template "
            "stands alone",
            token=stream.current,
        )


class IncludeNotAllowed(NotAllowedTag):
    name = "include"


class RenderNotAllowed(NotAllowedTag):
    name = "render"


class SafeEnvironment(Environment):
    # python-liquid ignores a limit attribute it does not know: pyproject.toml pins
    # the versions that honour all of these, tests/test_sandbox_limits.py proves it.
    # A "recently viewed" loop needs tens of iterations, not millions.
    loop_iteration_limit = 10_000
    # 2 MB is ten times the size Gmail clips at (102 KB); anything bigger is a bug.
    output_stream_limit = 2_000_000
    local_namespace_limit = 200_000
    context_depth_limit = 20
    block_nesting_limit = 20

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        self.add_tag(IncludeNotAllowed)
        self.add_tag(RenderNotAllowed)


def _money(value: Any, currency: str = "USD") -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    symbols = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
    symbol = symbols.get(str(currency).upper())
    text = f"{amount:,.2f}"
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def _local_date(value: Any, fmt: str = "%b %-d, %Y", tz: str | None = None) -> str:
    """A date or time in the contact's timezone (``tz`` defaults to theirs)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if not isinstance(value, dt.datetime):
        return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        zone = zoneinfo.ZoneInfo(tz or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo("UTC")
    return value.astimezone(zone).strftime(str(fmt))


def _make_environment(*, autoescape: bool) -> SafeEnvironment:
    env = SafeEnvironment(autoescape=autoescape)
    env.filters["money"] = _money
    env.filters["local_date"] = _local_date
    return env


HTML_ENV = _make_environment(autoescape=True)
TEXT_ENV = _make_environment(autoescape=False)


class RenderError(Exception):
    """A template that cannot render: the message says where and why."""

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.line = line
        self.column = column


def liquid_error(exc: LiquidError, field: str, source: str = "") -> RenderError:
    where = exc.context()
    if where:
        line, column = where[0], where[1] + 1
        position = f" (line {line}, column {column})"
    elif source:
        # Errors found at the end of input ("expected tag endif") carry no position.
        lines = source.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        position = f" (at the end, line {line}: a block opened earlier is not closed)"
    else:
        line = column = None
        position = ""
    return RenderError(
        f"{field}: {exc.message}{position}", field=field, line=line, column=column
    )


@functools.lru_cache(maxsize=512)
def _parse(source: str, html: bool):
    # A broadcast renders one template 100,000 times: parse it once per process.
    return (HTML_ENV if html else TEXT_ENV).from_string(source)


def render_string(
    source: str, context: dict[str, Any], *, html: bool, field: str
) -> str:
    try:
        return _parse(source, html).render(**context)
    except LiquidError as exc:
        raise liquid_error(exc, field, source) from None


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    # The List-Unsubscribe link the context gave the template (empty: make it).
    unsubscribe_url: str = ""


PREHEADER = (
    '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">{}</div>'
)
# Links stay visible in the plain-text part: "Unsubscribe [https://...]".
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.I)
_LINK = re.compile(r'(?P<attr>\b(?:href|src))=(?P<q>["\'])(?P<url>.*?)(?P=q)', re.I)


def absolute_links(html: str, base: str) -> str:
    """Relative href/src become absolute: an email has no base URL of its own."""

    def fix(match: re.Match) -> str:
        url = match["url"]
        if url.startswith(("#", "mailto:", "tel:", "{{", "data:")) or "://" in url:
            return match[0]
        return f"{match['attr']}={match['q']}{urljoin(base + '/', url)}{match['q']}"

    return _LINK.sub(fix, html)


def rewrite_links(html: str, rewrite) -> str:
    """Apply ``rewrite(url) -> url`` to every http(s) href (click tracking)."""

    def fix(match: re.Match) -> str:
        if match["attr"].lower() != "href" or not match["url"].startswith(
            ("http://", "https://")
        ):
            return match[0]
        return f"{match['attr']}={match['q']}{rewrite(match['url'])}{match['q']}"

    return _LINK.sub(fix, html)


def render_email(
    *,
    subject: str,
    preheader: str,
    html_body: str,
    text_body: str,
    layout_html: str | None,
    context: dict[str, Any],
    link_rewriter=None,
) -> RenderedEmail:
    """Render a template (and its layout) for one contact's context.

    Raises RenderError naming the field, line and column of the first problem.
    """
    rendered_subject = render_string(subject, context, html=False, field="subject")
    rendered_subject = " ".join(rendered_subject.split())[:255]
    body = render_string(html_body, context, html=True, field="html_body")
    if layout_html:
        html = render_string(
            layout_html, {**context, "content": Markup(body)}, html=True, field="layout"
        )
    else:
        html = body
    html = absolute_links(html, settings.SITE_URL)
    # The text part is made before the preheader goes in: inboxes show that, readers
    # of the plain text should not.
    text = None if text_body.strip() else html_to_text(html)
    if preheader:
        hidden = PREHEADER.format(
            Markup.escape(
                render_string(preheader, context, html=False, field="preheader")
            )
        )
        html, found = _BODY_TAG.subn(lambda m: m[0] + hidden, html, count=1)
        if not found:
            html = hidden + html
    if link_rewriter is not None:
        html = rewrite_links(html, link_rewriter)
    try:
        html = css_inline.inline(html)
    except ValueError as exc:  # css_inline reports unparsable CSS this way
        raise RenderError(
            f"CSS could not be inlined: {exc}", field="html_body"
        ) from None
    if text is None:
        text = render_string(text_body, context, html=False, field="text_body")
    return RenderedEmail(subject=rendered_subject, html=html, text=text)
