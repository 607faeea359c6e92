"""ESP tracking webhooks, end to end.

Each ESP's documented sample payload is posted through the test client to the real
anymail webhook view at /webhooks/anymail/<esp>/tracking/, with the credentials the
ESP would send, and must land as one Nudge Event on the contact, a Message.delivery
that only moves up, and a consent change where one is due.

The payloads follow each ESP's published samples (the page is named above each one),
as django-anymail's own tests (tests/test_<esp>_webhooks.py) copy them; only the
addresses, ids and our metadata (``nudge_message_id``, set on every send by
apps/campaigns/delivery.py) are ours, echoed back where each ESP echoes custom data:

- SendGrid: custom_args become top-level keys of each event (anymail adds its own
  ``anymail_id`` custom arg and reads it back as the message id);
- Mailgun: ``event-data.user-variables``;
- Postmark: ``Metadata``;
- Amazon SES: not ``mail.tags`` (anymail ignores SES message tags) but the
  ``X-Metadata`` header anymail's SES backend adds, echoed in ``mail.headers``;
- Brevo: the ``X-Mailin-custom`` header, echoed as a JSON string field.

Amazon SES arrives as an SNS Notification. anymail 15 does not verify SNS signatures
(see validate_request in anymail/webhooks/amazon_ses.py: "Future: Verify SNS message
signature"): it checks Basic auth and that the x-amz-sns-* headers match the body, so
the Signature fields in amazon_ses.py are the documentation's placeholders and nothing is
mocked. Its view does need boto3 at construction (for SNS subscription
auto-confirmation): Nudge installs django-anymail[amazon-ses] for it (pyproject.toml).
"""
