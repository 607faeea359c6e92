"""A local SMTP server for tests (aiosmtpd), that Django's SMTP backend (ours, see
apps/campaigns/smtp.py) talks to over a real socket. It accepts mail and keeps it,
and misbehaves on demand, by the recipient's address:

- ``drop@...``  the whole message is received after DATA, then the connection is
                closed with no reply (the server may well deliver it)
- ``busy@...``  RCPT TO answers 451 (try again later)
- ``nouser@...`` RCPT TO answers 550 (no such user)
"""

import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller


@dataclass
class SmtpStandIn:
    controller: Controller
    received: list[EmailMessage] = field(default_factory=list)
    # each message that reached DATA, whole, answered or not
    data_seen: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.controller.port

    def mailer(self) -> dict:
        return {
            "BACKEND": "apps.campaigns.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": self.port, "timeout": 10},
        }

    def stop(self) -> None:
        self.controller.stop()


class _Handler:
    def __init__(self, standin: SmtpStandIn) -> None:
        self.standin = standin

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("busy@"):
            return "451 4.3.0 Mailbox busy, try again later"
        if address.startswith("nouser@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.standin.data_seen.append(envelope.content)
        if any(r.startswith("drop@") for r in envelope.rcpt_tos):
            server.transport.close()  # taken, and no "250" ever comes
            return "250 OK"
        self.standin.received.append(
            message_from_bytes(envelope.content, policy=policy.default)
        )
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_smtp() -> SmtpStandIn:
    standin = SmtpStandIn(controller=None)  # type: ignore[arg-type]
    controller = Controller(
        _Handler(standin), hostname="127.0.0.1", port=_free_port(), ready_timeout=10
    )
    standin.controller = controller
    controller.start()
    return standin
