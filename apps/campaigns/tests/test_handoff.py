"""A send cut off mid-call: retried only when the ESP is known not to have the
message, ``uncertain`` (never resent by itself) when it may. Real local servers at the
network edge: a Postmark API stand-in driven by anymail's own Postmark backend, and an
SMTP server (aiosmtpd) driven by the SMTP backend."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from apps.campaigns.delivery import SendOutcome, message_send
from apps.campaigns.models import Message
from apps.campaigns.services import message_create
from apps.contacts.models import Contact
from apps.core import clock
from config.settings import anymail_settings
from tests.postmark_server import start_postmark
from tests.smtp_server import start_smtp

pytestmark = pytest.mark.django_db


@pytest.fixture
def postmark(settings):
    standin = start_postmark()
    # 1 s: a request the stand-in holds is a read timeout after the ESP took it
    settings.MAILERS = {"default": standin.mailer(timeout=1)}
    yield standin
    standin.stop()


@pytest.fixture
def smtp(settings):
    standin = start_smtp()
    settings.MAILERS = {"default": standin.mailer()}
    yield standin
    standin.stop()


def queued_to(template, address: str) -> Message:
    contact = Contact.objects.create(email=address)
    message, _ = message_create(contact=contact, template=template)
    return message


def outcome_of(message: Message) -> tuple[str, Message]:
    outcome = message_send(message_id=message.pk)
    message.refresh_from_db()
    return outcome, message


# -- an HTTP API ESP ----------------------------------------------------------------


def test_an_esp_that_took_the_request_and_dropped_the_connection_leaves_it_uncertain(
    postmark, template
):
    # given
    message = queued_to(template, "drop@example.com")
    # when
    outcome, message = outcome_of(message)
    # then the ESP has it, and Nudge does not send it again by itself
    assert postmark.message_ids() == [message.message_id_header]
    assert outcome == SendOutcome.UNCERTAIN
    assert message.status == Message.Status.UNCERTAIN
    assert "may or may not" in message.error
    assert message_send(message_id=message.pk) == SendOutcome.NOT_CLAIMED


def test_a_read_timeout_after_the_esp_took_the_request_leaves_it_uncertain(
    postmark, template
):
    message = queued_to(template, "hang@example.com")

    outcome, message = outcome_of(message)

    assert postmark.message_ids() == [message.message_id_header]
    assert (outcome, message.status) == (SendOutcome.UNCERTAIN, "uncertain")
    assert "ReadTimeout" in message.error


def test_an_esp_that_cannot_be_reached_is_retried_later(settings, template):
    # given an ESP address where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.MAILERS = {
        "default": {
            "BACKEND": "anymail.backends.postmark.EmailBackend",
            "OPTIONS": {
                "server_token": "t",
                "api_url": f"http://127.0.0.1:{closed_port}/",
                "timeout": 1,
            },
        }
    }
    message = queued_to(template, "ada@example.com")
    # when
    outcome, message = outcome_of(message)
    # then
    assert outcome == SendOutcome.RETRY
    assert message.status == Message.Status.QUEUED
    assert message.send_after > clock.now()
    assert "not reached" in message.error


def test_an_esp_answering_503_is_retried_and_422_fails(postmark, template):
    unavailable = queued_to(template, "fail-503@example.com")
    refused = queued_to(template, "bad@example.com")

    assert outcome_of(unavailable)[1].status == Message.Status.QUEUED
    outcome, refused = outcome_of(refused)

    assert (outcome, refused.status) == (SendOutcome.FAILED, "failed")
    assert "422" in refused.error
    assert postmark.message_ids() == []


def test_an_esp_that_accepts_records_the_send(postmark, template):
    message = queued_to(template, "ada@example.com")

    outcome, message = outcome_of(message)

    assert (outcome, message.status) == (SendOutcome.SENT, Message.Status.SENT)
    [received] = postmark.received
    assert received.message_id == message.message_id_header
    assert received.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_gateway_timeout_or_bad_gateway_before_the_esp_leaves_it_uncertain(
    postmark, template
):
    # given a load balancer that answers 504 or 502 for an ESP that took the request
    timed_out = queued_to(template, "gateway-504@example.com")
    bad = queued_to(template, "gateway-502@example.com")
    # when / then: neither is sent again by itself
    for message in (timed_out, bad):
        outcome, message = outcome_of(message)
        assert (outcome, message.status) == (SendOutcome.UNCERTAIN, "uncertain")
        assert "gateway" in message.error
    assert len(postmark.message_ids()) == 2


@pytest.fixture
def tls_ca():
    return trustme.CA()


@pytest.fixture
def postmark_over_tls(settings, tls_ca, tmp_path, monkeypatch):
    standin = start_postmark(tls=tls_ca.issue_cert("127.0.0.1"))
    settings.MAILERS = {"default": standin.mailer(timeout=2)}
    yield standin
    standin.stop()


def test_a_broken_tls_answer_after_the_esp_took_the_request_leaves_it_uncertain(
    postmark_over_tls, tls_ca, tmp_path, monkeypatch, template
):
    # given an ESP over HTTPS whose certificate the sender trusts
    bundle = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    broken = queued_to(template, "garble@example.com")
    plain = queued_to(template, "garble-plain@example.com")
    # when the request gets through and the answer is a broken TLS record, or
    # plain text (WRONG_VERSION_NUMBER, as a failed handshake can say too)
    for message in (broken, plain):
        outcome, message = outcome_of(message)
        # then a TLS error after the request does not make it "not reached"
        assert (outcome, message.status) == (SendOutcome.UNCERTAIN, "uncertain")
        assert "SSLError" in message.error
    assert "WRONG_VERSION_NUMBER" in message.error
    assert len(postmark_over_tls.message_ids()) == 2


def test_an_esp_whose_certificate_fails_verification_is_retried_later(
    postmark_over_tls, template
):
    # given an ESP over HTTPS whose certificate the sender does not trust: the
    # handshake fails before any request is written
    message = queued_to(template, "ada@example.com")

    outcome, message = outcome_of(message)

    assert postmark_over_tls.message_ids() == []
    assert (outcome, message.status) == (SendOutcome.RETRY, Message.Status.QUEUED)
    assert "CERTIFICATE_VERIFY_FAILED" in message.error


def test_amazon_ses_through_boto3_is_tried_once_when_it_does_not_answer(
    settings, template
):
    # given an Amazon SES endpoint stand-in that takes each request and does not
    # answer within the client's read timeout, and Nudge's settings for SES
    requests_seen = []
    release = threading.Event()

    class SlowSES(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            requests_seen.append(self.path)
            release.wait(10)

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSES)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    params = {
        "endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIDEXAMPLE",
        "aws_secret_access_key": "secret",
        "config": {"read_timeout": 1, "connect_timeout": 1},
    }
    settings.ANYMAIL = anymail_settings(
        {"ANYMAIL_AMAZON_SES_CLIENT_PARAMS": json.dumps(params)}
    )
    settings.MAILERS = {
        "default": {"BACKEND": "anymail.backends.amazon_ses.EmailBackend"}
    }
    message = queued_to(template, "ada@example.com")
    try:
        # when the send times out
        outcome, message = outcome_of(message)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    # then boto3 did not resend it behind Nudge's back, and it is uncertain
    assert requests_seen == ["/v2/email/outbound-emails"]
    assert (outcome, message.status) == (SendOutcome.UNCERTAIN, "uncertain")


# -- SMTP ---------------------------------------------------------------------------


def test_an_smtp_server_dropping_the_connection_after_data_leaves_it_uncertain(
    smtp, template
):
    # given
    message = queued_to(template, "drop@example.com")
    # when
    outcome, message = outcome_of(message)
    # then the server received the whole message, and it is not sent again
    assert len(smtp.data_seen) == 1
    assert (outcome, message.status) == (SendOutcome.UNCERTAIN, "uncertain")
    assert "after DATA" in message.error
    assert message_send(message_id=message.pk) == SendOutcome.NOT_CLAIMED


def test_smtp_refusals_before_data_are_retried_or_failed_by_their_code(smtp, template):
    busy = queued_to(template, "busy@example.com")
    unknown = queued_to(template, "nouser@example.com")

    assert outcome_of(busy)[1].status == Message.Status.QUEUED
    outcome, unknown = outcome_of(unknown)

    assert (outcome, unknown.status) == (SendOutcome.FAILED, "failed")
    assert "550" in unknown.error
    assert smtp.data_seen == []


def test_an_smtp_server_that_cannot_be_reached_is_retried(settings, template):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings.MAILERS = {
        "default": {
            "BACKEND": "apps.campaigns.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": closed_port, "timeout": 2},
        }
    }
    message = queued_to(template, "ada@example.com")

    outcome, message = outcome_of(message)

    assert (outcome, message.status) == (SendOutcome.RETRY, Message.Status.QUEUED)


def test_mail_over_smtp_arrives_with_a_one_line_list_unsubscribe(smtp, template):
    message = queued_to(template, "ada@example.com")

    outcome, message = outcome_of(message)

    assert (outcome, message.status) == (SendOutcome.SENT, Message.Status.SENT)
    [received] = smtp.received
    assert received["Message-ID"] == message.message_id_header
    raw = smtp.data_seen[0].decode()
    # one line, the URL as is (RFC 2047 encoded words would break the link)
    [line] = [x for x in raw.splitlines() if x.startswith("List-Unsubscribe:")]
    assert line.startswith("List-Unsubscribe: <http") and line.endswith("/>")


def test_anymail_variables_are_typed_as_anymail_expects():
    settings = anymail_settings(
        {
            "ANYMAIL_IGNORE_RECIPIENT_STATUS": "false",
            "ANYMAIL_DEBUG_API_REQUESTS": "Off",
            "ANYMAIL_REQUESTS_TIMEOUT": "2.5",
            "ANYMAIL_POSTMARK_SERVER_TOKEN": "abc-123",
            "ANYMAIL_AMAZON_SES_CLIENT_PARAMS": '{"region_name": "eu-west-1"}',
            "OTHER": "x",
        }
    )
    assert settings == {
        "IGNORE_RECIPIENT_STATUS": False,
        "DEBUG_API_REQUESTS": False,
        "REQUESTS_TIMEOUT": 2.5,
        "POSTMARK_SERVER_TOKEN": "abc-123",
        "AMAZON_SES_CLIENT_PARAMS": {
            "region_name": "eu-west-1",
            "config": {"retries": {"total_max_attempts": 1}},
        },
    }
