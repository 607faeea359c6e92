from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from apps.core.views import healthz

from .api import api

admin.site.site_header = "Nudge"
admin.site.site_title = "Nudge admin"
admin.site.index_title = "Marketing automation"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("demo/", include("apps.events.demo_urls")),
    path("e/", include("apps.campaigns.urls")),
    # ESP tracking webhooks, e.g. /webhooks/anymail/postmark/tracking/ (Basic auth:
    # ANYMAIL_WEBHOOK_SECRET, required with DEBUG off; Mailgun: its signing key).
    path("webhooks/anymail/", include("apps.campaigns.webhook_urls")),
]
