"""Sections of the contact page contributed by other apps.

Contacts sit below events, workflows and campaigns, so the contact page cannot import
them; instead each registers a panel here (timeline, enrollments, messages) in its
``AppConfig.ready()``.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.utils.safestring import SafeString


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    # render(request, contact) -> HTML built with format_html / a template (escaped)
    render: Callable[[HttpRequest, object], SafeString]
    order: int = 100


_panels: dict[str, Panel] = {}


def register_panel(panel: Panel) -> None:
    _panels[panel.key] = panel


def contact_panels() -> list[Panel]:
    return sorted(_panels.values(), key=lambda p: (p.order, p.key))


# Admin actions on the contact list contributed by other apps ("add to a static list").
_contact_actions: list[Callable] = []


def register_contact_action(action: Callable, *, needs: tuple[str, ...] = ()) -> None:
    """An action of the contact list from another app; ``needs``: the permissions
    of that app it needs too (beyond its ``permissions`` on contacts): without them
    a user is not offered it."""
    action.needs = needs
    if action not in _contact_actions:
        _contact_actions.append(action)


def contact_actions() -> list[Callable]:
    return list(_contact_actions)
