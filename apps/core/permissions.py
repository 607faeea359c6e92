"""What an admin page or action needs beyond ``is_staff``: the model permissions.

``admin_site.admin_view`` lets in any active staff user; every custom admin view
goes through ``guarded`` instead, naming what it needs, so a staff account with no
permissions (or a Viewer) gets 403 rather than the page. A need is

- "view", "add", "change" or "delete": the model admin's ``has_<x>_permission``
  (which the admin's own pages use, so a model admin that narrows them narrows its
  custom pages too);
- "app_label.codename": that permission, from any app (a template preview with a
  contact's data needs ``contacts.view_contact`` too);
- a tuple of the above: any one of them.
"""

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

Need = str | tuple[str, ...]


def allowed(request: HttpRequest, model_admin, *needs: Need) -> bool:
    return all(_has(request, model_admin, need) for need in needs)


def require(request: HttpRequest, model_admin, *needs: Need) -> None:
    """Raise PermissionDenied (403) unless the request's user has every need."""
    if not allowed(request, model_admin, *needs):
        raise PermissionDenied


def guarded(model_admin, view: Callable, *needs: Need) -> Callable:
    """``view`` behind the admin's login and ``needs``."""

    @wraps(view)
    def checked(request: HttpRequest, *args, **kwargs):
        require(request, model_admin, *needs)
        return view(request, *args, **kwargs)

    return model_admin.admin_site.admin_view(checked)


def _has(request: HttpRequest, model_admin, need: Need) -> bool:
    if isinstance(need, tuple):
        return any(_has(request, model_admin, one) for one in need)
    if "." in need:
        return request.user.has_perm(need)
    return getattr(model_admin, f"has_{need}_permission")(request)
