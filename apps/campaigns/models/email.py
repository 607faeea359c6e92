from urllib.parse import urlsplit

from django.conf import settings
from django.db import models

from apps.contacts.models import Contact


class EmailLayout(models.Model):
    """The shared frame of every email: header, footer, physical address, unsubscribe.

    Its HTML is Liquid with ``{{ content }}`` where the template's body goes.
    """

    name = models.CharField(max_length=100, unique=True)
    html = models.TextField(
        help_text="Liquid HTML. Must contain {{ content }} and {{ unsubscribe_url }}."
    )
    is_default = models.BooleanField(
        default=False, help_text="Used by templates that name no layout."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_layout",
            )
        ]

    def __str__(self) -> str:
        return self.name


class EmailTemplate(models.Model):
    """An email a marketer writes: Liquid subject and body, rendered per contact."""

    name = models.CharField(max_length=150, unique=True)
    subject = models.CharField(max_length=255)
    preheader = models.CharField(
        max_length=255, blank=True, help_text="The preview text inboxes show."
    )
    html_body = models.TextField("HTML body", help_text="Liquid HTML")
    text_body = models.TextField(
        "text body",
        blank=True,
        help_text="Liquid plain text; empty = generated from the HTML.",
    )
    layout = models.ForeignKey(
        EmailLayout,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        help_text="Empty = the default layout.",
    )
    from_name = models.CharField(max_length=100, blank=True)
    from_email = models.EmailField(blank=True, help_text="Empty = DEFAULT_FROM_EMAIL.")
    reply_to = models.EmailField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    track_clicks = models.BooleanField(
        default=False,
        help_text="Rewrite links through Nudge's signed redirect (for ESPs that "
        "do not track clicks themselves).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Topic(models.Model):
    """What an email is about ("Newsletter", "Offers"): people subscribe to each.

    A contact with no TopicSubscription row has the topic's default. Topics only
    narrow who gets marketing email: the contact's email consent and the address
    list still apply first (apps/campaigns/topics.py).
    """

    class Default(models.TextChoices):
        OPT_IN = "opt_in", "Opt-in (only those who subscribed)"
        OPT_OUT = "opt_out", "Opt-out (everyone until they leave it)"

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.CharField(
        max_length=300, blank=True, help_text="Shown on the preference page."
    )
    default = models.CharField(
        max_length=8, choices=Default.choices, default=Default.OPT_IN
    )
    listed = models.BooleanField(
        default=True, help_text="Shown on the preference page, for people to change."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TopicSubscription(models.Model):
    """A contact's own choice for a topic; written only by topics.topic_set."""

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="topic_subscriptions"
    )
    topic = models.ForeignKey(
        Topic, on_delete=models.CASCADE, related_name="subscriptions"
    )
    subscribed = models.BooleanField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "topic"], name="topic_subscription_once"
            )
        ]
        indexes = [
            models.Index(fields=["topic", "subscribed"], name="topic_sub_topic_idx")
        ]

    def __str__(self) -> str:
        state = "in" if self.subscribed else "out"
        return f"{self.contact_id} {state} {self.topic_id}"


class Message(models.Model):
    """One email to one contact: the unit that is sent exactly once.

    What caused it is recorded as plain ids (the workflow engine sits above this app);
    the unique (enrollment_id, step_id, visit) is the last line of defence against the
    engine ever producing two for one pass through a step.
    """

    class Kind(models.TextChoices):
        MARKETING = "marketing", "Marketing (to the contact)"
        # A "Notify the team" step's email about the contact, to staff: no template,
        # no consent of the contact's, no tracking; sent the same claimed way.
        NOTIFICATION = "notification", "Team notification"
        # To the contact, about their own business (an order receipt): sent without
        # their marketing consent or topic choices, never to a bounced or
        # complained address (services.suppression_reason).
        TRANSACTIONAL = (
            "transactional",
            "Transactional (sent without marketing consent)",
        )
        # Double opt-in: the email that asks a pending contact to confirm; sent only
        # while they are pending (services.send_refusal).
        CONFIRMATION = "confirmation", "Opt-in confirmation"

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        SUPPRESSED = "suppressed"
        # A worker died between claiming and recording: it may or may not have gone.
        UNCERTAIN = "uncertain"
        # What caused it no longer wants it (its workflow archived, its run ended
        # by a goal or an exit before it went out).
        CANCELLED = "cancelled"

    class Delivery(models.TextChoices):
        """What the ESP told us since; only ever moves up (see DELIVERY_RANK)."""

        NONE = "", "—"
        DELIVERED = "delivered"
        OPENED = "opened"
        CLICKED = "clicked"
        UNSUBSCRIBED = "unsubscribed"
        COMPLAINED = "complained"
        BOUNCED = "bounced"

    # Indexes cost every send three times (made, claimed, recorded): each one here
    # is read by something (see Meta), and none repeats another's leading column.
    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    kind = models.CharField(max_length=13, choices=Kind.choices, default=Kind.MARKETING)
    # Empty only for notifications, whose text is rendered when they are created.
    template = models.ForeignKey(
        EmailTemplate,
        on_delete=models.PROTECT,
        related_name="messages",
        null=True,
        blank=True,
        db_index=False,
    )
    to_email = models.EmailField(
        blank=True,
        help_text=(
            "The address it goes to: given for test sends and notifications; for "
            "the contact's email, their address at the last attempt to send it (a "
            "later bounce is about that one)."
        ),
    )
    body_text = models.TextField(
        blank=True, help_text="A notification's text, rendered when it was created."
    )
    enrollment_id = models.BigIntegerField(null=True, blank=True)
    step_id = models.BigIntegerField(null=True, blank=True)
    # Which pass through the step (the enrollment's step count when it arrived): a
    # workflow that loops back through a send step sends once per pass.
    visit = models.PositiveIntegerField(default=0)
    campaign_id = models.BigIntegerField(null=True, blank=True)
    # The campaign's snapshot row this message is for (CampaignRecipient).
    campaign_recipient_id = models.BigIntegerField(null=True, blank=True)
    # What it is about: only the topic's subscribers get it, and its one-click
    # unsubscribe leaves the topic, not all marketing email.
    topic = models.ForeignKey(
        Topic,
        on_delete=models.PROTECT,
        related_name="messages",
        null=True,
        blank=True,
    )
    is_test = models.BooleanField(default=False)
    # Plain data the template renders with besides the contact: the trigger event,
    # the workflow's name. Captured when the message is created.
    render_context = models.JSONField(default=dict, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.QUEUED
    )
    delivery = models.CharField(
        max_length=12, choices=Delivery.choices, default=Delivery.NONE, blank=True
    )
    esp_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    # When a queued message may next be tried (backoff after an ESP error).
    send_after = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment_id", "step_id", "visit"],
                name="message_once_per_step_visit",
                condition=models.Q(enrollment_id__isnull=False),
            ),
            # A campaign reaches each recipient at most once, whatever its workers
            # do (recipients are unique per campaign and contact; a merge may later
            # give one contact two, each with its own message).
            models.UniqueConstraint(
                fields=["campaign_recipient_id"],
                name="message_once_per_campaign_recipient",
                condition=models.Q(campaign_recipient_id__isnull=False),
            ),
        ]
        indexes = [
            models.Index(fields=["contact", "-created_at"], name="message_contact_idx"),
            models.Index(fields=["template", "status"], name="message_template_idx"),
            # A campaign's progress, and whether any of its messages is in flight.
            models.Index(fields=["campaign_id", "status"], name="message_campaign_idx"),
            # The ESP's webhooks find a message by its id (exact match only).
            models.Index(fields=["esp_message_id"], name="message_esp_id_idx"),
            # The tick: queued and due; claimed too long ago; uncertain, for health.
            models.Index(
                fields=["send_after"],
                name="message_queued_due_idx",
                condition=models.Q(status="queued"),
            ),
            models.Index(
                fields=["claimed_at"],
                name="message_sending_idx",
                condition=models.Q(status="sending"),
            ),
            models.Index(
                fields=["status"],
                name="message_uncertain_idx",
                condition=models.Q(status="uncertain"),
            ),
        ]

    def __str__(self) -> str:
        what = self.template or self.subject or self.get_kind_display()
        return f"#{self.pk} {what} -> {self.recipient or self.contact_id}"

    @property
    def recipient(self) -> str:
        return self.to_email or self.contact.email or ""

    @property
    def message_id_header(self) -> str:
        """A stable RFC 5322 Message-ID: the same on every retry, so ESPs and
        receiving servers can recognise a duplicate."""
        domain = (
            settings.NUDGE_MESSAGE_ID_DOMAIN or urlsplit(settings.SITE_URL).hostname
        )
        return f"<nudge-{self.pk}@{domain}>"


# Higher wins: a late "delivered" never overwrites "bounced".
DELIVERY_RANK = {
    Message.Delivery.NONE: 0,
    Message.Delivery.DELIVERED: 1,
    Message.Delivery.OPENED: 2,
    Message.Delivery.CLICKED: 3,
    Message.Delivery.UNSUBSCRIBED: 4,
    Message.Delivery.COMPLAINED: 5,
    Message.Delivery.BOUNCED: 6,
}


class EspEvent(models.Model):
    """Each ESP tracking event, seen once by the ESP's event id: replays are no-ops."""

    esp = models.CharField(max_length=30)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=30)
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["esp", "event_id"], name="esp_event_once")
        ]

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type} {self.event_id}"
