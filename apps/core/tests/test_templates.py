"""The project's templates: no comment that Django would print as text."""

import re
from pathlib import Path

from django.conf import settings

# {# ... #} is a one-line comment in Django: one that spans lines is printed as is.
ONE_LINE_COMMENT = re.compile(r"\{#(.*?)#\}", re.S)


def _templates() -> list[Path]:
    roots = [Path(d) for engine in settings.TEMPLATES for d in engine["DIRS"]]
    roots += Path(settings.BASE_DIR, "apps").glob("*/templates")
    return sorted(p for root in roots for p in root.rglob("*.html"))


def test_no_template_has_a_comment_django_would_print():
    found = _templates()
    assert len(found) > 20
    printed = []
    for path in found:
        text = path.read_text()
        for comment in ONE_LINE_COMMENT.finditer(text):
            if "\n" in comment.group(1):
                printed.append(f"{path}:{text[: comment.start()].count(chr(10)) + 1}")
        printed += [
            f"{path}:{number}"
            for number, line in enumerate(text.splitlines(), 1)
            if line.count("{#") > line.count("#}")
        ]
    assert printed == [], "use {% comment %} for a comment over several lines"


def test_a_large_list_page_shows_no_template_text(admin_client):
    page = admin_client.get("/admin/events/event/")
    assert page.status_code == 200
    assert b"{#" not in page.content and b"#}" not in page.content
