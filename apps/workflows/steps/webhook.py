"""Webhook: POST JSON, signed, retried with backoff, the response recorded."""

import datetime as dt
import hashlib
import hmac
import json
import logging
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction

from apps.core import clock, jobs
from apps.core.secrets import stored_secret

from ..models import WebhookDelivery
from .base import Outcome, StepContext, StepType, register_step

logger = logging.getLogger(__name__)

# 30 s, 2 min, 10 min, 1 h, 6 h: a receiver down for a deploy or an afternoon still
# gets the call; then it is marked failed.
RETRY_DELAYS = [30, 120, 600, 3600, 21600]
TIMEOUT_SECONDS = 10
RESPONSE_KEEP = 2000


# The name of the stored secret, when NUDGE_WEBHOOK_SECRET is not set.
SECRET_NAME = "webhook"  # noqa: S105 - a name, not a secret
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def webhook_signing_secret() -> str:
    """The secret receivers are given: NUDGE_WEBHOOK_SECRET, or one generated and
    stored on first use. Never derived from SECRET_KEY, which receivers could then
    use to forge sessions, signed links and unsubscribe tokens. Read on every
    delivery (one indexed row), so a rotation reaches every worker at once."""
    return settings.NUDGE_WEBHOOK_SECRET or stored_secret(
        name=SECRET_NAME, prefix=SECRET_PREFIX
    )


def signature(body: bytes, timestamp: int) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``: receivers recompute it with
    the shared secret and reject old timestamps (replays)."""
    secret = webhook_signing_secret().encode()
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Webhook(StepType):
    name = "webhook"
    label = "Webhook"

    def validate(self, config, where):
        url = config.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if not parts or parts.scheme not in {"http", "https"} or not parts.netloc:
            return [f"{where}.url: an http(s) URL"]
        return []

    def run(self, ctx: StepContext) -> Outcome:
        contact = ctx.contact
        payload = {
            "type": "workflow.webhook",
            "workflow": ctx.enrollment.workflow.name,
            "step": ctx.step.key,
            "enrollment_id": ctx.enrollment.pk,
            "contact": {
                "id": contact.pk,
                "email": contact.email,
                "user_id": contact.external_id,
                "attributes": contact.attributes or {},
            },
            "trigger_event": ctx.enrollment.trigger_event,
            "extra": ctx.step.config.get("payload") or {},
        }
        delivery, _created = WebhookDelivery.objects.get_or_create(
            enrollment=ctx.enrollment,
            step=ctx.step,
            defaults={
                "url": ctx.step.config["url"],
                "payload": payload,
                "next_attempt_at": ctx.now,
                "created_at": ctx.now,
            },
        )
        enqueue_delivery(delivery)
        return Outcome(
            "queued",
            reason=f"POST to {delivery.url}",
            detail={"delivery_id": delivery.pk},
        )

    def describe(self, config):
        return f"Webhook to {urlsplit(config.get('url') or '').netloc or '?'}"


def enqueue_delivery(delivery: WebhookDelivery) -> None:
    from ..tasks import deliver_webhook

    jobs.enqueue(
        deliver_webhook,
        delivery.pk,
        queue="default",
        job_id=f"webhook-{delivery.pk}-{delivery.attempts}",
        at=delivery.next_attempt_at if delivery.next_attempt_at > clock.now() else None,
        retry=None,
    )


def webhook_deliver(*, delivery_id: int) -> str:
    """POST once; on failure schedule the next attempt. The row lock makes two workers
    wait for each other instead of posting twice."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(
                pk=delivery_id,
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=clock.now(),
            )
            .first()
        )
        if delivery is None:
            return "not due"
        body = json.dumps(delivery.payload, sort_keys=True, default=str).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Nudge-Webhook/1",
            "X-Nudge-Delivery": str(delivery.pk),
            "X-Nudge-Signature": signature(body, int(clock.now().timestamp())),
        }
        delivery.attempts += 1
        try:
            response = httpx.post(
                delivery.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            return _failed(delivery, error=f"{type(exc).__name__}: {exc}")
        delivery.response_status = response.status_code
        delivery.response_body = response.text[:RESPONSE_KEEP]
        if 200 <= response.status_code < 300:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.error = ""
            delivery.save()
            return "delivered"
        return _failed(delivery, error=f"HTTP {response.status_code}")


def _failed(delivery: WebhookDelivery, *, error: str) -> str:
    delivery.error = error
    if delivery.attempts > len(RETRY_DELAYS):
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.save()
        logger.warning(
            "webhook gave up", extra={"delivery_id": delivery.pk, "error": error}
        )
        return "failed"
    delivery.next_attempt_at = clock.now() + dt.timedelta(
        seconds=RETRY_DELAYS[delivery.attempts - 1]
    )
    delivery.save()
    enqueue_delivery(delivery)
    return "retry"


register_step(Webhook())
