"""Django's SMTP backend, knowing how far each message got.

An error after the DATA command may come after the server took the message; one
before it cannot. Django's backend raises the same exceptions either way, so this one
marks each message with its phase ("connect", "envelope", "data", "accepted") for
apps/campaigns/handoff.py to read. config/settings.py uses it wherever
``django.core.mail.backends.smtp.EmailBackend`` is configured.
"""

import smtplib

from django.core.mail.backends import smtp

PHASE = "nudge_smtp_phase"


class _Phased:
    """smtplib.SMTP whose DATA marks the message being sent."""

    nudge_message = None

    def data(self, msg):
        self._phase("data")
        reply = super().data(msg)
        self._phase("accepted")
        return reply

    def _phase(self, phase: str) -> None:
        if self.nudge_message is not None:
            setattr(self.nudge_message, PHASE, phase)


class PhasedSMTP(_Phased, smtplib.SMTP):
    pass


class PhasedSMTPSSL(_Phased, smtplib.SMTP_SSL):
    pass


class EmailBackend(smtp.EmailBackend):
    @property
    def connection_class(self):
        return PhasedSMTPSSL if self.use_ssl else PhasedSMTP

    def send_messages(self, email_messages):
        for message in email_messages or ():
            setattr(message, PHASE, "connect")
        return super().send_messages(email_messages)

    def _send(self, email_message):
        setattr(email_message, PHASE, "envelope")
        self.connection.nudge_message = email_message
        try:
            return super()._send(email_message)
        finally:
            if self.connection is not None:
                self.connection.nudge_message = None
