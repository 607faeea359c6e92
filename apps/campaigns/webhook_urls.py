"""ESP tracking webhooks, e.g. /webhooks/anymail/postmark/tracking/ (apps.campaigns
.webhooks says what guards them). The names are anymail's own."""

from .webhooks import tracking_urlpatterns

app_name = "anymail"
urlpatterns = tracking_urlpatterns()
