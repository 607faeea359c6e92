"""Where a webhook step may post: public addresses (or the allow-list), the address it
checked, no redirects, a capped answer within a deadline; and what admin shows of it.

Receivers are real local HTTP servers; DNS is the network edge, answered by a fixed
resolver where a test needs a name to resolve somewhere."""

import http.server
import threading

import pytest
from django.contrib.auth.models import Permission
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from apps.core import outbound
from apps.workflows.definition import validate_definition
from apps.workflows.models import WebhookDelivery
from apps.workflows.services import enrollment_start

HOST = "hooks.example.test"


class Receiver(http.server.ThreadingHTTPServer):
    """A local webhook receiver; ``answer(handler)`` writes its response."""

    def __init__(self, address: str = "127.0.0.1", answer=None):
        self.calls: list[tuple[dict, bytes]] = []
        self.answered = threading.Event()
        self.answer = answer or _ok
        super().__init__((address, 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.calls.append((dict(self.headers), body))
        try:
            self.server.answer(self)
        finally:
            self.server.answered.set()

    def log_message(self, *args):
        pass


def _ok(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "12")
    handler.end_headers()
    handler.wfile.write(b'{"ok": true}')


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(address: str = "127.0.0.1", answer=None) -> Receiver:
        started.append(Receiver(address, answer))
        return started[-1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


class FixedDns:
    """Answers for host names, one list of addresses per lookup (the last one
    repeats), so a test can make an answer change between lookups."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def dns(monkeypatch):
    fixed = FixedDns()
    monkeypatch.setattr(outbound, "resolve_host", fixed.resolve)
    return fixed


@pytest.fixture
def post_to(make_workflow, customer, settle):
    """Run a one-step webhook workflow posting to ``url``; return its delivery."""

    def run(url: str) -> WebhookDelivery:
        workflow = make_workflow(
            "Hook",
            trigger={"type": "manual"},
            steps=[{"key": "crm", "type": "webhook", "config": {"url": url}}],
        )
        enrollment_start(workflow=workflow, contact=customer("w1"))
        settle()
        return WebhookDelivery.objects.get()

    return run


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        (["127.0.0.1"], "127.0.0.1, a loopback address"),
        (["127.0.0.1", "10.1.2.3"], "10.1.2.3, a private address"),
        (["127.0.0.1", "169.254.169.254"], "169.254.169.254, a link-local address"),
        (["127.0.0.1", "::1"], "::1, a loopback address"),
        (["127.0.0.1", "fd12::1"], "fd12::1, a private address"),
        (
            ["127.0.0.1", "::ffff:10.0.0.1"],
            "::ffff:a00:1, an IPv6 form of 10.0.0.1, a private address",
        ),
        # a DNS answer here, not an address to bind
        (["127.0.0.1", "0.0.0.0"], "0.0.0.0, the unspecified address"),  # noqa: S104
        (["127.0.0.1", "224.0.0.1"], "224.0.0.1, a multicast address"),
        (["127.0.0.1", "100.64.0.1"], "100.64.0.1, not a public address"),
    ],
)
def test_a_name_resolving_to_any_non_public_address_is_refused_and_nothing_is_sent(
    answer, refusal, receivers, dns, post_to, later, settings, frozen_clock
):
    # given a receiver on 127.0.0.1, and a name that resolves to it (allow-listed
    # where the answer also holds another address: that one must be checked too)
    receiver = receivers()
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"] if len(answer) > 1 else []
    dns.answers[HOST] = [answer]
    # when the step posts to that name
    delivery = post_to(f"http://{HOST}:{receiver.port}/hook")
    # then nothing reached the receiver, and the delivery failed at once with why
    assert receiver.calls == []
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.error.startswith(f"refused: {HOST} resolves to {refusal}")
    later(seconds=31)
    delivery.refresh_from_db()
    assert (delivery.attempts, receiver.calls) == (1, [])


def test_the_connection_goes_to_the_address_that_was_checked(
    receivers, dns, post_to, settings, frozen_clock
):
    # given a name whose answer changes after the first lookup (DNS rebinding) to
    # the cloud metadata address
    receiver = receivers()
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    dns.answers[HOST] = [["127.0.0.1"], ["169.254.169.254"]]
    # when the step posts to it
    delivery = post_to(f"http://{HOST}:{receiver.port}/hook")
    # then the name was looked up once, and the POST went to the address checked,
    # with the name in its Host header
    assert dns.lookups == [HOST]
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    headers, _body = receiver.calls[0]
    assert headers["Host"] == f"{HOST}:{receiver.port}"


def test_an_allow_listed_internal_receiver_is_reached(
    receivers, dns, post_to, settings, frozen_clock
):
    # given an internal receiver named in the allow-list
    receiver = receivers()
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["10.0.0.0/8", HOST]
    dns.answers[HOST] = [["127.0.0.1"]]
    # when the step posts to it
    delivery = post_to(f"http://{HOST}:{receiver.port}/hook")
    # then it is delivered
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert len(receiver.calls) == 1


def test_a_redirect_is_not_followed(receivers, post_to, settings, frozen_clock):
    # given an allow-listed receiver that redirects to a private address where
    # another server listens
    inside = receivers("127.0.0.2")

    def redirect(handler):
        handler.send_response(307)
        handler.send_header("Location", f"http://127.0.0.2:{inside.port}/admin")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver = receivers(answer=redirect)
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    # when the step posts
    delivery = post_to(f"http://127.0.0.1:{receiver.port}/hook")
    # then the redirect is recorded as a failure and its target got nothing
    assert inside.calls == []
    assert (delivery.status, delivery.response_status) == ("pending", 307)
    assert delivery.error == "HTTP 307: redirects are not followed"


def test_a_large_answer_is_read_only_up_to_the_limit(
    receivers, post_to, settings, frozen_clock
):
    # given a receiver that answers 32 MB
    size, sent = 32 * 1024 * 1024, []

    def flood(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(size // len(chunk)):
                handler.wfile.write(chunk)
                sent.append(len(chunk))
        except OSError:
            pass  # the client hung up: what we wanted

    receiver = receivers(answer=flood)
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    # when the step posts
    delivery = post_to(f"http://127.0.0.1:{receiver.port}/hook")
    # then it counts as delivered, and the receiver could not send all of it: the
    # connection was closed once the limit was read
    assert receiver.answered.wait(10)
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert delivery.response_body == "x" * 2000
    assert sum(sent) < size


def test_a_slow_answer_is_cut_at_the_deadline(
    receivers, post_to, settings, frozen_clock
):
    # given a receiver that answers a byte at a time for three seconds, and a
    # one-second deadline
    stop = threading.Event()

    def drip(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "30")
        handler.end_headers()
        try:
            for _ in range(30):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                if stop.wait(0.1):
                    return
        except OSError:
            pass

    receiver = receivers(answer=drip)
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.NUDGE_WEBHOOK_TIMEOUT_SECONDS = 1
    # when the step posts
    delivery = post_to(f"http://127.0.0.1:{receiver.port}/hook")
    stop.set()
    # then the attempt timed out and will be tried again
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.error.startswith("ReadTimeout")


@pytest.mark.django_db(transaction=True)
def test_no_row_lock_is_held_while_the_receiver_answers(
    receivers, post_to, settings, frozen_clock
):
    # given a receiver that, while answering, tries to lock the delivery's row
    # from a connection of its own
    locked = []

    def try_lock(handler):
        try:
            with transaction.atomic():
                WebhookDelivery.objects.select_for_update(nowait=True).filter(
                    pk=int(handler.headers["X-Nudge-Delivery"])
                ).first()
            locked.append(False)
        except DatabaseError:
            locked.append(True)
        finally:
            connection.close()
        _ok(handler)

    receiver = receivers(answer=try_lock)
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    # when the step posts
    delivery = post_to(f"http://127.0.0.1:{receiver.port}/hook")
    # then the row was free during the call, and the answer was recorded after it
    assert locked == [False]
    assert delivery.status == WebhookDelivery.Status.DELIVERED


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1 is a loopback address"),
        ("http://localhost/hook", "localhost is a loopback address"),
        ("http://10.0.0.5/hook", "10.0.0.5 is a private address"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a link-local address",
        ),
        ("http://[::1]/hook", "::1 is a loopback address"),
        ("http://2130706433/hook", "2130706433 is a loopback address"),
        (
            "https://crm:s3cret@hooks.example.com/hook",
            "a URL without user:password@",
        ),
    ],
)
def test_saving_a_webhook_to_a_non_public_address_says_why(url, error, settings):
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = []
    steps = [{"key": "crm", "type": "webhook", "config": {"url": url}}]
    errors = validate_definition({"trigger": {"type": "manual"}, "steps": steps})
    assert len(errors) == 1
    assert errors[0].startswith(f"steps[0] (crm).config.url: {error}")


def test_the_allow_list_admits_its_ranges_and_no_more(settings):
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["10.0.0.0/8"]

    def errors(url: str) -> list[str]:
        steps = [{"key": "crm", "type": "webhook", "config": {"url": url}}]
        return validate_definition({"trigger": {"type": "manual"}, "steps": steps})

    assert errors("http://10.0.0.5/hook") == []
    assert len(errors("http://127.0.0.1/hook")) == 1


def test_the_answer_is_shown_only_to_those_who_may_edit_the_workflow(
    receivers, post_to, settings, frozen_clock, client, django_user_model
):
    # given a delivery whose receiver answered something
    def secret(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "13")
        handler.end_headers()
        handler.wfile.write(b"internal-data")

    receiver = receivers(answer=secret)
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    delivery = post_to(f"http://127.0.0.1:{receiver.port}/hook")
    page = reverse("admin:workflows_webhookdelivery_change", args=[delivery.pk])

    def staff(name: str, *codenames: str):
        user = django_user_model.objects.create_user(name, is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
        return user

    # when one who may only view deliveries looks, then the answer is not shown
    client.force_login(staff("viewer", "view_webhookdelivery"))
    response = client.get(page)
    assert response.status_code == 200
    assert b"internal-data" not in response.content
    # when one who may edit workflows looks, then it is
    client.force_login(staff("editor", "view_webhookdelivery", "change_workflow"))
    assert b"internal-data" in client.get(page).content


def test_a_path_with_non_ascii_characters_is_delivered_percent_encoded(
    receivers, post_to, settings, frozen_clock
):
    # given an allow-listed receiver, and a URL typed with an accented path
    receiver = receivers(answer=_ok_with_path)
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    # when the step posts to it, then it is delivered, once, to the encoded path
    delivery = post_to(f"http://127.0.0.1:{receiver.port}/café?q=thé")
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    assert receiver.paths == ["/caf%C3%A9?q=th%C3%A9"]


def test_a_delivery_whose_attempts_are_spent_is_failed_not_sent_again(
    receivers, post_to, settings, frozen_clock
):
    # given a delivery still pending with every attempt spent (its last worker died
    # before it could record the answer)
    from apps.workflows.steps.webhook import RETRY_DELAYS, webhook_deliver

    receiver = receivers()
    settings.NUDGE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    delivery = post_to(f"http://127.0.0.1:{receiver.port}/hook")
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING,
        attempts=len(RETRY_DELAYS) + 1,
        next_attempt_at=delivery.created_at,
    )
    calls = len(receiver.calls)
    # when a worker takes it again
    webhook_deliver(delivery_id=delivery.pk)
    # then it is failed with why, and the receiver got no further call
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert len(receiver.calls) == calls


def _ok_with_path(handler):
    handler.server.paths = [*getattr(handler.server, "paths", []), handler.path]
    _ok(handler)
