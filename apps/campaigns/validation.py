"""Checking a template before it is saved: syntax, unknown variables, a trial render."""

from dataclasses import dataclass, field
from typing import Any

from liquid.exceptions import LiquidError

from apps.contacts.models import Contact

from .context import build_context
from .rendering import HTML_ENV, TEXT_ENV, RenderError, liquid_error, render_email

# Variables whose contents depend on the trigger, not the contact: known roots, but
# their paths cannot be checked against a sample.
OPEN_ROOTS = {"event", "workflow", "recent_events", "content"}


@dataclass
class TemplateCheck:
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_template(
    *,
    fields: dict[str, str],
    layout_html: str | None,
    sample_contact: Contact | None,
) -> TemplateCheck:
    """``fields``: subject, preheader, html_body, text_body (Liquid sources)."""
    check = TemplateCheck()
    parsed = {}
    for name, source in fields.items():
        if not source:
            continue
        env = HTML_ENV if name == "html_body" else TEXT_ENV
        try:
            parsed[name] = env.from_string(source)
        except LiquidError as exc:
            check.errors.setdefault(name, []).append(
                str(liquid_error(exc, name, source))
            )
    if check.errors:
        return check

    contact = sample_contact or Contact(first_name="Sample", email="sample@example.com")
    context = build_context(contact=contact, message_id=None, is_test=True)
    for name, template in parsed.items():
        for path in sorted(template.global_variable_paths()):
            warning = _unknown(path, context, sample=sample_contact is not None)
            if warning:
                check.warnings.append(f"{name}: {warning}")

    try:
        render_email(
            subject=fields.get("subject", ""),
            preheader=fields.get("preheader", ""),
            html_body=fields.get("html_body", ""),
            text_body=fields.get("text_body", ""),
            layout_html=layout_html,
            context=context,
        )
    except RenderError as exc:
        check.errors.setdefault(exc.field or "html_body", []).append(
            f"does not render for the sample contact: {exc}"
        )
    return check


def _unknown(path: str, context: dict[str, Any], *, sample: bool) -> str | None:
    segments = [s.strip("[]'\"") for s in path.replace("[", ".[").split(".") if s]
    root = segments[0]
    if root in OPEN_ROOTS:
        return None
    if root not in context:
        return f"unknown variable '{root}' (known: {', '.join(sorted(context))})"
    value: Any = context
    for depth, segment in enumerate(segments):
        if isinstance(value, dict) and segment in value:
            value = value[segment]
            continue
        if isinstance(value, list) and segment in {"first", "last", "size"}:
            return None
        where = ".".join(segments[: depth + 1])
        if root == "contact" and depth >= 1:
            who = "the sample contact" if sample else "a contact"
            hint = f"{{{{ {where} | default: '…' }}}}"
            return f"'{where}' is not set for {who}; use a default: {hint}"
        return f"unknown variable '{where}'"
    return None
