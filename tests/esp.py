"""An ESP at the boundary, for tests: Anymail's test backend, plus failures on demand.

Recipients decide the outcome: ``fail-500@...`` gets a 500 from the "ESP" (transient),
``fail-400@...`` a 400 (permanent), ``refused@...`` a rejected recipient. Anything else
is accepted and lands in django.core.mail.outbox.
"""

import json

from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailAPIError
from anymail.message import AnymailRecipientStatus
from requests import Response


def _esp_response(status: int, reason: str, body: dict) -> Response:
    response = Response()
    response.status_code = status
    response.reason = reason
    response._content = json.dumps(body).encode()
    return response


def _esp_error(status: int, reason: str, message: str) -> AnymailAPIError:
    # As a requests-based Anymail backend raises it: status code plus the response.
    return AnymailAPIError(
        message,
        status_code=status,
        response=_esp_response(status, reason, {"error": message}),
        esp_name="Test",
    )


class FlakyEspBackend(AnymailTestBackend):
    esp_name = "Test"

    def post_to_esp(self, payload, message):
        recipient = message.to[0]
        if recipient.startswith("fail-500@"):
            raise _esp_error(500, "Internal Server Error", "ESP unavailable")
        if recipient.startswith("fail-400@"):
            raise _esp_error(400, "Bad Request", "invalid From address")
        if recipient.startswith("refused@"):
            message.anymail_test_response = {
                "recipient_status": {
                    recipient: AnymailRecipientStatus(
                        message_id=None, status="rejected"
                    )
                }
            }
        return super().post_to_esp(payload, message)


class RecordingBackend(AnymailTestBackend):
    """For tests with real worker processes: each email handed over is appended to
    the file NUDGE_TEST_OUTBOX as "<Message-ID> <recipient>". The first email to a
    ``slow@`` address hangs (after leaving a marker file), so a test can kill the
    worker in the middle of a send."""

    def post_to_esp(self, payload, message):
        import os
        import threading

        outbox = os.environ["NUDGE_TEST_OUTBOX"]
        marker = outbox + ".sending"
        if message.to[0].startswith("slow@") and not os.path.exists(marker):
            with open(marker, "w") as handle:
                handle.write(message.extra_headers.get("Message-ID", ""))
            threading.Event().wait(120)  # the test SIGKILLs us here
        response = super().post_to_esp(payload, message)
        with open(outbox, "a") as handle:
            handle.write(f"{message.extra_headers.get('Message-ID')} {message.to[0]}\n")
            handle.flush()
            os.fsync(handle.fileno())
        return response
