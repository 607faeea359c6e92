"""Anymail's ESP tracking webhooks, with the guards Nudge adds in front of them.

Anymail authenticates a webhook with HTTP Basic auth (``ANYMAIL_WEBHOOK_SECRET``)
and, for some ESPs, a signature. Three gaps remain, closed here:

- With no secret configured anymail only warns and accepts anyone's post, so anyone
  could bounce or unsubscribe any contact. Outside the demo (``DEBUG`` off) Nudge
  refuses every ESP webhook until the secret is set.
- A body of the wrong shape (a JSON list, a string, a field of the wrong type) makes
  anymail's parsing raise, which Django answers with a 500 and the ESP retries for
  hours. It is bad input: a 400 that says so.
- Mailgun signs only a timestamp and a token; anymail checks the signature but not
  the timestamp, so a signature captured once stays good forever. An old one is
  refused as a replay (the token is also kept as the event id, which dedupes the
  rest).
"""

import functools
import json
import logging

from anymail import urls as anymail_urls
from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailWebhookValidationFailure,
)
from anymail.signals import tracking
from anymail.utils import get_anymail_setting
from anymail.webhooks.mailgun import MailgunBaseWebhookView
from django.conf import settings
from django.core import checks
from django.http import HttpResponse, HttpResponseBadRequest
from django.urls import URLPattern

from apps.core import clock

logger = logging.getLogger(__name__)

# What anymail's parsers raise on a body that is not what the ESP sends: JSON that
# does not decode or has the wrong shape (a list indexed by name, None.get, ...).
# Network and database errors are not among them: those stay 5xx, so the ESP retries.
MALFORMED = (
    ValueError,  # includes json.JSONDecodeError and UnicodeDecodeError
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    AssertionError,  # Mandrill: a batch mixing tracking and inbound events
    AnymailAPIError,  # Amazon SES: "Malformed SNS message body"
)


class MalformedWebhook(Exception):
    """A webhook body anymail could not read."""


def webhook_refusal() -> str | None:
    """Why ESP webhooks are refused on this server, or None if they are accepted."""
    if settings.DEBUG or get_anymail_setting("webhook_secret", default=None):
        return None
    return (
        "ESP webhooks are disabled on this server until ANYMAIL_WEBHOOK_SECRET is "
        "set (an unauthenticated webhook could bounce or unsubscribe anyone)."
    )


def check_webhook_secret(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: say at start-up, not at the first bounce, that webhooks are off."""
    refusal = webhook_refusal()
    if not refusal:
        return []
    return [
        checks.Warning(
            refusal,
            hint="Set ANYMAIL_WEBHOOK_SECRET to user:password and put it in the "
            "webhook URL you give the ESP (https://user:password@host/webhooks/...).",
            id="nudge.W011",
        )
    ]


class GuardedWebhookMixin:
    """Put in front of an anymail webhook view: bad bodies and failed checks get a
    400 that says why, and the reason is logged."""

    def run_validators(self, request):
        try:
            super().run_validators(request)
        except AnymailWebhookValidationFailure:
            raise
        except MALFORMED as exc:
            raise MalformedWebhook(exc) from exc

    def parse_events(self, request):
        # Parsed in full before the first event is applied: a batch whose third
        # event is malformed applies none, and the ESP's retry is not half a replay.
        try:
            events = list(super().parse_events(request))
        except (*MALFORMED, AnymailConfigurationError) as exc:
            # AnymailConfigurationError here is anymail recognising an inbound
            # message posted to a tracking URL: the wrong body for this address.
            raise MalformedWebhook(exc) from exc
        for event in events:
            unreadable_field = _unreadable_field(event)
            if unreadable_field:
                raise MalformedWebhook(f"{unreadable_field} is not text") from None
        return events

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        except AnymailWebhookValidationFailure as exc:
            logger.warning("ESP webhook refused: %s", exc, extra={"esp": self.esp_name})
            return _plain(HttpResponseBadRequest, f"Webhook refused: {exc}")
        except MalformedWebhook as exc:
            logger.warning(
                "ESP webhook with a malformed body: %r",
                exc.__cause__ or exc,
                extra={"esp": self.esp_name},
            )
            return _plain(
                HttpResponseBadRequest,
                f"Malformed {self.esp_name} webhook: the body is not in the form "
                f"{self.esp_name} documents for tracking events.",
            )


class MailgunFreshnessMixin:
    """Refuse a Mailgun signature older (or further ahead) than the allowed age."""

    def run_validators(self, request):
        super().run_validators(request)  # the signature first: a forged time is noise
        signed_at = _mailgun_timestamp(request)
        max_age = settings.NUDGE_MAILGUN_WEBHOOK_MAX_AGE_SECONDS
        age = clock.now().timestamp() - signed_at
        if not abs(age) <= max_age:  # written so that a NaN time is refused too
            raise AnymailWebhookValidationFailure(
                f"Mailgun webhook signature is {int(age)} seconds old; at most "
                f"{max_age} seconds are accepted (a replay?)"
            )


# The normalised fields Nudge stores: anymail passes on whatever type the body had.
TEXT_FIELDS = [
    "recipient",
    "message_id",
    "click_url",
    "description",
    "mta_response",
    "reject_reason",
    "user_agent",
]


def _unreadable_field(event) -> str | None:
    """The first field Nudge could not store as text (a number for an address, a
    NUL character, which PostgreSQL refuses), or None."""
    fields = {name: getattr(event, name, None) for name in TEXT_FIELDS}
    fields["event_id"] = event.event_id
    if isinstance(event.event_id, int):  # Postmark's bounce ID is a number
        fields["event_id"] = str(event.event_id)
    metadata = getattr(event, "metadata", None) or {}
    if not isinstance(metadata, dict):
        return "metadata"
    # Other metadata values may be numbers; only a text one is stored as text.
    fields |= {f"metadata.{k}": v for k, v in metadata.items() if isinstance(v, str)}
    for name, value in fields.items():
        if value is not None and (not isinstance(value, str) or "\x00" in value):
            return name
    return None


def _mailgun_timestamp(request) -> float:
    """The signed timestamp, read where anymail read it to check the signature."""
    if request.content_type == "application/json":
        timestamp = json.loads(request.body.decode("utf-8"))["signature"]["timestamp"]
    else:
        timestamp = request.POST["timestamp"]
    return float(timestamp)


def guarded_view(view_class: type):
    """The URL's view: refused while unconfigured, else ``view_class`` guarded."""
    bases = [GuardedWebhookMixin]
    if issubclass(view_class, MailgunBaseWebhookView):
        bases.append(MailgunFreshnessMixin)
    guarded = type(f"Guarded{view_class.__name__}", (*bases, view_class), {})
    inner = guarded.as_view()

    @functools.wraps(inner)
    def view(request, *args, **kwargs):
        refusal = webhook_refusal()
        if refusal:
            logger.error(
                "ESP webhook refused: %s", refusal, extra={"path": request.path}
            )
            return _plain(functools.partial(HttpResponse, status=403), refusal)
        try:
            return inner(request, *args, **kwargs)
        except AnymailConfigurationError as exc:
            # Raised when the view is built, before the request is read: this
            # ESP's own key (say ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY) is not set.
            logger.error("ESP webhook refused: %s", exc, extra={"path": request.path})
            return _plain(
                functools.partial(HttpResponse, status=403),
                f"{view_class.esp_name} webhooks are not configured on this server.",
            )

    return view


def _plain(response_class, text: str) -> HttpResponse:
    return response_class(text, content_type="text/plain; charset=utf-8")


def tracking_urlpatterns() -> list[URLPattern]:
    """Anymail's tracking webhook URLs, each view guarded. Its inbound URLs are left
    out: Nudge reads no inbound mail, so they would only be something to attack."""
    patterns = []
    for pattern in anymail_urls.urlpatterns:
        view_class = pattern.callback.view_class
        if view_class.signal is not tracking and "mandrill" not in pattern.name:
            continue
        patterns.append(
            URLPattern(pattern.pattern, guarded_view(view_class), name=pattern.name)
        )
    return patterns
