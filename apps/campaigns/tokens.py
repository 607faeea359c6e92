"""Signed tokens for links in email: unsubscribe, preferences, view, click redirect.

django.core.signing with a salt per purpose, so a token made for one purpose is
useless for another, and SECRET_KEY_FALLBACKS keep links in old emails working after
the key is rotated. A token names its contact (and message): it cannot be altered to
point at someone else without breaking the signature.
"""

from dataclasses import dataclass

from django.core import signing

UNSUBSCRIBE_SALT = "nudge.campaigns.unsubscribe"
VIEW_SALT = "nudge.campaigns.view"
CLICK_SALT = "nudge.campaigns.click"
CONFIRM_SALT = "nudge.campaigns.confirm"


@dataclass(frozen=True)
class ContactToken:
    contact_id: int
    message_id: int | None
    # From a test send (or a preview): the pages it leads to change nothing.
    is_test: bool = False
    # An unsubscribe link of an email sent for a topic: it leaves that topic only.
    # Signed with the rest, so it cannot be swapped for another topic (or dropped
    # to turn "leave the newsletter" into "leave everything", or the reverse).
    topic_id: int | None = None


def make_contact_token(
    *,
    contact_id: int,
    message_id: int | None,
    salt: str,
    is_test: bool = False,
    topic_id: int | None = None,
) -> str:
    data = {"c": contact_id, "m": message_id}
    if is_test:
        data["t"] = 1
    if topic_id is not None:
        data["p"] = topic_id
    return signing.dumps(data, salt=salt, compress=True)


def read_contact_token(token: str, *, salt: str) -> ContactToken | None:
    try:
        data = signing.loads(token, salt=salt)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("c"), int):
        return None
    message_id, topic_id = data.get("m"), data.get("p")
    return ContactToken(
        contact_id=data["c"],
        message_id=message_id if isinstance(message_id, int) else None,
        is_test=bool(data.get("t")),
        topic_id=topic_id if isinstance(topic_id, int) else None,
    )


def make_click_token(*, message_id: int, url: str) -> str:
    return signing.dumps({"m": message_id, "u": url}, salt=CLICK_SALT, compress=True)


def read_click_token(token: str) -> tuple[int, str] | None:
    try:
        data = signing.loads(token, salt=CLICK_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    message_id, url = data.get("m"), data.get("u")
    if not isinstance(message_id, int) or not isinstance(url, str):
        return None
    if not url.startswith(("http://", "https://")):
        return None
    return message_id, url
