"""Did the ESP take the message? Every error of a send, sorted by what it proves.

An error that proves the ESP never had the message (no connection, a certificate that
failed verification, a refused login, an HTTP 4xx/5xx answer from the ESP itself, an
SMTP error reply before the message was sent) is safe to retry. An error after the
message may have reached it (a read timeout, a connection reset, any other TLS error,
a 502/504 from a gateway in front of the ESP, a dropped SMTP connection after DATA) is
not: the ESP may deliver it, and a retry would send it twice (a stable Message-ID does not stop ESPs from
delivering both). Those are ``uncertain``, for a person to decide. Anything this module
does not recognise is uncertain too: guessing "not sent" is how duplicates happen.
"""

import enum
import smtplib
import socket
import ssl
from dataclasses import dataclass

from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)


class Verdict(enum.StrEnum):
    RETRY = "retry"  # the ESP never took it: try again later
    FAIL = "fail"  # refused for good: trying again cannot help
    UNCERTAIN = "uncertain"  # it may have gone: never resend blindly
    SENT = "sent"  # the ESP took it; the error came afterwards


@dataclass(frozen=True)
class Classified:
    verdict: Verdict
    reason: str


def classify(exc: BaseException, email=None) -> Classified:
    """What ``exc``, raised while handing ``email`` to the backend, says."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, AnymailRecipientsRefused):
        return Classified(Verdict.FAIL, f"recipient refused by the ESP: {exc}")
    if isinstance(
        exc,
        AnymailInvalidAddress | AnymailUnsupportedFeature | AnymailSerializationError,
    ) or _invalid_for_ses(exc):
        return Classified(Verdict.FAIL, f"the message cannot be sent: {exc}")
    smtp = _smtp(exc, getattr(email, "nudge_smtp_phase", None))
    if smtp is not None:
        return smtp
    status = _http_status(exc)
    if status is not None:
        return _by_status(status, text)
    if _never_connected(exc):
        return Classified(Verdict.RETRY, f"the ESP was not reached: {text}")
    return Classified(
        Verdict.UNCERTAIN,
        f"the send was cut off and may or may not have reached the ESP: {text}",
    )


# 502 Bad Gateway and 504 Gateway Timeout: said by a gateway about the ESP behind it.
GATEWAY_STATUSES = (502, 504)


def _by_status(status: int, text: str) -> Classified:
    if 200 <= status < 300:
        # It answered "accepted" and something went wrong reading the answer.
        return Classified(Verdict.UNCERTAIN, f"the ESP answered {status}: {text}")
    if status in GATEWAY_STATUSES:
        # A proxy or load balancer in front of the ESP answered: the ESP behind it
        # may have taken the message and failed to answer in time.
        return Classified(
            Verdict.UNCERTAIN, f"a gateway before the ESP answered {status}: {text}"
        )
    if status == 429 or status >= 500:
        return Classified(Verdict.RETRY, f"the ESP answered {status}: {text}")
    return Classified(Verdict.FAIL, f"ESP refused the message ({status}): {text}")


def _invalid_for_ses(exc: BaseException) -> bool:
    """botocore refused the request's parameters before sending it: the same
    message would be refused again."""
    import botocore.exceptions as boto

    return any(isinstance(c, boto.ParamValidationError) for c in _causes(exc))


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status the ESP answered with, if it answered at all."""
    for cause in _causes(exc):
        if isinstance(cause, AnymailAPIError) and cause.status_code is not None:
            return int(cause.status_code)
        response = getattr(cause, "response", None)
        if isinstance(response, dict):  # botocore's ClientError (Amazon SES)
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if isinstance(status, int):
                return status
    return None


def _never_connected(exc: BaseException) -> bool:
    """Whether the error happened before a request could reach the ESP: the
    connection was refused, timed out or failed its TLS handshake, the name did not
    resolve, the credentials or the URL are wrong."""
    import botocore.exceptions as boto
    import requests.exceptions as req
    import urllib3.exceptions as url3

    causes = list(_causes(exc))
    if any(isinstance(c, ssl.SSLError | req.SSLError) for c in causes):
        # requests, urllib3 and botocore raise the same errors for a TLS failure in
        # the handshake and one after the request was written, and the same reasons
        # (WRONG_VERSION_NUMBER, alerts) come in both. Only a certificate that
        # failed verification is sure to be the handshake's.
        return any(
            isinstance(c, ssl.SSLCertVerificationError | ssl.CertificateError)
            for c in causes
        )
    for cause in causes:
        if isinstance(
            cause,
            req.ConnectTimeout
            | req.ProxyError
            | req.InvalidURL
            | req.MissingSchema
            | req.InvalidSchema
            | req.URLRequired
            | url3.NewConnectionError
            | url3.ConnectTimeoutError
            | url3.ProxyError
            | boto.ConnectionError  # endpoint, connect timeout, proxy
            | boto.NoCredentialsError
            | boto.NoRegionError
            | ConnectionRefusedError
            | socket.gaierror,
        ):
            return True
    return False


def _smtp(exc: BaseException, phase: str | None) -> Classified | None:
    """SMTP errors, by how far the message got (apps/campaigns/smtp.py records it);
    None when this is not an SMTP send."""
    if phase is None and not isinstance(exc, smtplib.SMTPException):
        return None
    text = f"{type(exc).__name__}: {exc}"
    if phase == "accepted":
        return Classified(Verdict.SENT, f"sent; an error followed: {text}")
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # every recipient refused at RCPT TO: the lowest code says if it may pass later
        code = min((c for c, _text in exc.recipients.values()), default=None)
    if isinstance(code, int) and 400 <= code < 600:
        # The server answered with an error code: it did not take the message.
        verdict = Verdict.RETRY if code < 500 else Verdict.FAIL
        return Classified(verdict, f"the mail server answered {code}: {text}")
    if phase == "data":
        return Classified(
            Verdict.UNCERTAIN,
            f"the connection failed after DATA; the server may have the message: {text}",
        )
    if phase in ("connect", "envelope"):
        return Classified(Verdict.RETRY, f"the mail server did not take it: {text}")
    # Django's own SMTP backend does not say how far it got: only errors that
    # come before any message is sent are known to be safe.
    if isinstance(
        exc,
        smtplib.SMTPConnectError
        | smtplib.SMTPHeloError
        | smtplib.SMTPAuthenticationError
        | smtplib.SMTPNotSupportedError,
    ) or _never_connected(exc):
        return Classified(Verdict.RETRY, f"the mail server did not take it: {text}")
    return Classified(
        Verdict.UNCERTAIN, f"the SMTP send was cut off at an unknown point: {text}"
    )


def _causes(exc: BaseException):
    """``exc`` and the exceptions it was explicitly raised from (``raise ... from``,
    and requests' and urllib3's wrapped reasons). Not ``__context__``: an error
    handled earlier (a refused first address before a later one connected) says
    nothing of how this one ended."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            todo.append(current.__cause__)
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        if isinstance(reason, BaseException):
            todo.append(reason)
        # requests.ConnectionError(MaxRetryError(...)) keeps urllib3's error in args
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                todo.append(arg)
