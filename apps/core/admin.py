"""The RQ dashboard behind a permission: it empties queues and deletes jobs, and
django-rq lets in any staff user (and answers 500 for a job or worker that is gone)."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import URLPattern
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard
from rq.exceptions import NoSuchJobError

# django-rq's own permission, which only the Admin role holds.
DASHBOARD_PERMISSION = "django_rq.admin"
MODEL_PAGES = ("_add", "_history", "_delete", "_change")


class GuardedQueueAdmin(QueueAdmin):
    def get_urls(self):
        # Not the model pages of its table-less model (history, delete, change):
        # they fail on the missing table.
        return [
            _guarded(url)
            for url in super().get_urls()
            if url.name and not url.name.endswith(MODEL_PAGES)
        ]

    def has_module_permission(self, request):
        return request.user.has_perm(DASHBOARD_PERMISSION)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(DASHBOARD_PERMISSION)

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm(DASHBOARD_PERMISSION)


def _guarded(url: URLPattern) -> URLPattern:
    view = url.callback

    def checked(request, *args, **kwargs):
        # Signed in without the permission: refused. Not signed in: the view's own
        # answer (the login page, or its API token check).
        user = request.user
        if user.is_authenticated and not user.has_perm(DASHBOARD_PERMISSION):
            raise PermissionDenied
        try:
            return view(request, *args, **kwargs)
        except NoSuchJobError as exc:  # a job gone meanwhile: not a server error
            raise Http404(str(exc)) from exc
        except AssertionError as exc:  # how its worker page says "no such worker"
            raise Http404("no such worker") from exc

    return URLPattern(url.pattern, checked, url.default_args, url.name)


if admin.site.is_registered(Dashboard):
    admin.site.unregister(Dashboard)
    admin.site.register(Dashboard, GuardedQueueAdmin)
