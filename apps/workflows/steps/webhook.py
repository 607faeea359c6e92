"""Webhook: POST JSON, signed, retried with backoff, the response recorded.

Delivery is at least once: an attempt is claimed (a short transaction), sent with no
transaction or row lock held, then recorded. A worker that dies mid-POST leaves the
claim to run out, and the tick hands the delivery to another worker; the receiver
may then see it twice, and ``X-Nudge-Delivery`` is the key it deduplicates on.

Destinations go through :mod:`apps.core.outbound`: public addresses only (plus
``NUDGE_WEBHOOK_ALLOWED_HOSTS``), no redirects, a capped answer and one deadline. A
refused destination fails the delivery at once with the reason; retrying would not
change what the name resolves to often enough to be worth five more tries.
"""

import datetime as dt
import hashlib
import hmac
import json
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from apps.core import clock, jobs, outbound
from apps.core.secrets import stored_secret

from ..models import WebhookDelivery
from .base import Outcome, StepContext, StepType, register_step

logger = logging.getLogger(__name__)

# 30 s, 2 min, 10 min, 1 h, 6 h: a receiver down for a deploy or an afternoon still
# gets the call; then it is marked failed.
RETRY_DELAYS = [30, 120, 600, 3600, 21600]
# What is read of an answer: receivers say "ok" or an error, not megabytes; a larger
# answer is cut (and the connection closed) rather than held in a worker's memory.
RESPONSE_READ_LIMIT = 64 * 1024
RESPONSE_KEEP = 2000
# How long a claimed attempt stays claimed past its deadline: a worker killed
# mid-POST leaves it, and the tick hands it on once this has passed.
CLAIM_MARGIN_SECONDS = 30


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
        refusal = outbound.url_refusal(
            config.get("url"), allowed=allowed_destinations()
        )
        if refusal is None:
            return []
        if refusal == "an http(s) URL":
            return [f"{where}.url: {refusal}"]
        # Names are resolved when sending; an address typed here is judged now.
        return [
            f"{where}.url: {refusal}; webhooks go to public addresses only "
            "(NUDGE_WEBHOOK_ALLOWED_HOSTS lists internal receivers)"
        ]

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


def allowed_destinations() -> outbound.AllowList:
    return outbound.AllowList.parse(settings.NUDGE_WEBHOOK_ALLOWED_HOSTS)


def webhook_deliver(*, delivery_id: int) -> str:
    """POST once; on failure schedule the next attempt. Claim, then call, then record:
    no row lock or transaction is held while the receiver takes its time."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return "not due"
    body = json.dumps(delivery.payload, sort_keys=True, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Nudge-Webhook/1",
        "X-Nudge-Delivery": str(delivery.pk),
        "X-Nudge-Signature": signature(body, int(clock.now().timestamp())),
    }
    try:
        response = outbound.post(
            delivery.url,
            body=body,
            headers=headers,
            allowed=allowed_destinations(),
            timeout=settings.NUDGE_WEBHOOK_TIMEOUT_SECONDS,
            max_bytes=RESPONSE_READ_LIMIT,
        )
    except outbound.Refused as exc:
        logger.warning(
            "webhook refused", extra={"delivery_id": delivery.pk, "error": str(exc)}
        )
        delivery.status = WebhookDelivery.Status.FAILED
        return _record(delivery, error=f"refused: {exc}", outcome="refused")
    except outbound.OutboundError as exc:
        return _failed(delivery, error=str(exc))
    delivery.response_status = response.status
    delivery.response_body = response.body.decode("utf-8", "replace")[:RESPONSE_KEEP]
    if 200 <= response.status < 300:
        delivery.status = WebhookDelivery.Status.DELIVERED
        return _record(delivery, error="", outcome="delivered")
    if 300 <= response.status < 400:
        return _failed(
            delivery, error=f"HTTP {response.status}: redirects are not followed"
        )
    return _failed(delivery, error=f"HTTP {response.status}")


def _claim(delivery_id: int) -> WebhookDelivery | None:
    """Take the due attempt: count it and move ``next_attempt_at`` past its deadline,
    so neither another worker nor the tick starts it again while it is in flight."""
    now = clock.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(
                pk=delivery_id,
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=now,
            )
            .first()
        )
        if delivery is None:
            return None
        if delivery.attempts > len(RETRY_DELAYS):
            # Its attempts are spent, yet it is pending: the worker of its last one
            # died before recording it (or kept crashing). Never a call more.
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.error = delivery.error or "attempts spent without an answer"
            delivery.save(update_fields=["status", "error"])
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + dt.timedelta(
            seconds=settings.NUDGE_WEBHOOK_TIMEOUT_SECONDS + CLAIM_MARGIN_SECONDS
        )
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return delivery


def _record(delivery: WebhookDelivery, *, error: str, outcome: str) -> str:
    """Write the attempt's result, if the delivery is still the one this attempt
    claimed (an admin may have changed it meanwhile)."""
    delivery.error = error
    updated = WebhookDelivery.objects.filter(
        pk=delivery.pk,
        status=WebhookDelivery.Status.PENDING,
        attempts=delivery.attempts,
    ).update(
        status=delivery.status,
        error=delivery.error,
        next_attempt_at=delivery.next_attempt_at,
        response_status=delivery.response_status,
        response_body=delivery.response_body,
    )
    if updated != 1:
        logger.warning(
            "webhook changed while sending", extra={"delivery_id": delivery.pk}
        )
        return "superseded"
    return outcome


def _failed(delivery: WebhookDelivery, *, error: str) -> str:
    if delivery.attempts > len(RETRY_DELAYS):
        delivery.status = WebhookDelivery.Status.FAILED
        logger.warning(
            "webhook gave up", extra={"delivery_id": delivery.pk, "error": error}
        )
        return _record(delivery, error=error, outcome="failed")
    delivery.next_attempt_at = clock.now() + dt.timedelta(
        seconds=RETRY_DELAYS[delivery.attempts - 1]
    )
    outcome = _record(delivery, error=error, outcome="retry")
    if outcome == "retry":
        enqueue_delivery(delivery)
    return outcome


register_step(Webhook())
