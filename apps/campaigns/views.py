"""Public pages reached from links in email. No login, no cookies: the signed token
in the URL is the authority, and only for its own contact."""

import hashlib
from dataclasses import dataclass

from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.contacts.consent import ConsentProof, Source
from apps.contacts.models import ConsentStatus, Contact
from apps.contacts.services import contact_surviving
from apps.contacts.suppression import address_suppression
from apps.core import clock
from apps.core.ip import client_ip
from apps.events.services import event_record

from .delivery import message_render
from .models import Message, Topic
from .services import (
    contact_may_resubscribe,
    contact_resubscribe,
    contact_unsubscribe,
)
from .tokens import (
    UNSUBSCRIBE_SALT,
    VIEW_SALT,
    make_contact_token,
    read_click_token,
    read_contact_token,
)
from .topics import subscribed_to, topic_set, topic_states
from .tracking import _raise_delivery


@dataclass(frozen=True)
class _Link:
    contact: Contact
    message: Message | None
    is_test: bool
    # Set for an unsubscribe link of an email sent for a topic: it leaves that one.
    topic: Topic | None = None


# What the pages say next to each choice. The templates show these very strings and
# each change records the one the person chose, so the proof quotes the page.
WORDING = {
    "subscribe": "Send me news, offers and reminders",
    "unsubscribe": "Unsubscribe me from all marketing email",
    "topics": "What we send you",
    "one_click": "Unsubscribe",
    "confirm": "Yes, subscribe me",
}
# The page each source's changes are made on.
PAGES = {
    Source.PREFERENCES: "preference page",
    Source.ONE_CLICK: "unsubscribe link",
    Source.CONFIRMATION: "confirmation page (double opt-in)",
}


def link_proof(
    request: HttpRequest, link: _Link, *, source: str, wording: str
) -> ConsentProof:
    """Where a change made through a link came from: the page, the address the
    link's email went to, the person's IP (anonymised when recorded)."""
    message = link.message
    if message is not None:
        who = f"{message.recipient} (link in message #{message.pk})"
    else:
        who = f"{link.contact.email or 'the contact'} (link)"
    return ConsentProof(
        source=source,
        who=who,
        ip=client_ip(request.META),
        form=PAGES[source],
        wording=wording,
    )


def _resolve(token: str, salt: str) -> _Link | None:
    data = read_contact_token(token, salt=salt)
    if data is None:
        return None
    # A link names the contact the email went to; merged since, it leads to the
    # contact that absorbed them (whose messages, the link's one included, moved).
    contact = contact_surviving(data.contact_id)
    if contact is None:
        return None
    message = None
    if data.message_id is not None:
        message = Message.objects.filter(pk=data.message_id, contact=contact).first()
    is_test = data.is_test or bool(message and message.is_test)
    topic = None
    if data.topic_id is not None:
        # Gone since (no message names it any more): the link leaves everything,
        # the stricter reading of what the person asked.
        topic = Topic.objects.filter(pk=data.topic_id).first()
    return _Link(contact=contact, message=message, is_test=is_test, topic=topic)


def _invalid_link() -> HttpResponse:
    return HttpResponseBadRequest(
        "This link is invalid or has been altered. Use the link from your email as is."
    )


def _test_link(request: HttpRequest, link: _Link) -> HttpResponse:
    """A link from a test email (or a preview): it shows what the page is and
    changes nothing. A POST (a mail client's one-click) is refused."""
    response = render(
        request,
        "campaigns/test_link.html",
        {"contact": link.contact},
        status=400 if request.method == "POST" else 200,
    )
    return _no_cache(response)


# RFC 8058: mail clients POST "List-Unsubscribe=One-Click" to the List-Unsubscribe URL,
# with no cookies and no CSRF token. A GET (from a person or a link scanner) only asks.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    link = _resolve(token, UNSUBSCRIBE_SALT)
    if link is None:
        return _invalid_link()
    if link.is_test:
        return _test_link(request, link)
    if link.topic is not None:
        return _leave_topic(request, link)
    contact = link.contact
    done = False
    if request.method == "POST":
        contact_unsubscribe(
            contact=contact,
            reason="unsubscribe link",
            proof=link_proof(
                request, link, source=Source.ONE_CLICK, wording=_one_click_wording()
            ),
            message=link.message,
        )
        done = True
    response = render(
        request,
        "campaigns/unsubscribe.html",
        {
            "wording": WORDING,
            "contact": contact,
            "token": token,
            "done": done,
            "unsubscribed": contact.email_consent != ConsentStatus.SUBSCRIBED,
        },
    )
    return _no_cache(response)


def _leave_topic(request: HttpRequest, link: _Link) -> HttpResponse:
    """The unsubscribe link of an email sent for a topic: a POST (the one-click, or
    the button) leaves that topic only; the page offers leaving everything too."""
    contact, topic = link.contact, link.topic
    done = False
    if request.method == "POST":
        topic_set(
            contact=contact,
            topic=topic,
            subscribed=False,
            proof=link_proof(
                request,
                link,
                source=Source.ONE_CLICK,
                wording=_one_click_wording(topic),
            ),
        )
        if link.message is not None:
            Message.objects.filter(
                pk=link.message.pk, unsubscribed_at__isnull=True
            ).update(unsubscribed_at=clock.now())
        done = True
    everything = make_contact_token(
        contact_id=contact.pk,
        message_id=link.message.pk if link.message else None,
        salt=UNSUBSCRIBE_SALT,
    )
    response = render(
        request,
        "campaigns/leave_topic.html",
        {
            "contact": contact,
            "topic": topic,
            "button": _one_click_wording(topic),
            "done": done,
            "subscribed": subscribed_to(contact, topic),
            "everything": everything,
        },
    )
    return _no_cache(response)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    link = _resolve(token, UNSUBSCRIBE_SALT)
    if link is None:
        return _invalid_link()
    if link.is_test:
        return _test_link(request, link)
    contact = link.contact
    saved = False
    if request.method == "POST":
        choice = request.POST.get("marketing")
        if choice in ("unsubscribe", "subscribe"):
            proof = link_proof(
                request, link, source=Source.PREFERENCES, wording=WORDING[choice]
            )
            if choice == "unsubscribe":
                contact_unsubscribe(
                    contact=contact,
                    reason="preference page",
                    proof=proof,
                    message=link.message,
                )
            else:
                contact_resubscribe(
                    contact=contact, reason="preference page", proof=proof
                )
            saved = True
        if request.POST.get("topics_shown"):
            _save_topics(
                request,
                link,
                request.POST.getlist("topics_shown"),
                request.POST.getlist("topic"),
            )
            saved = True
        contact.refresh_from_db()
    subscribed = contact.email_consent == ConsentStatus.SUBSCRIBED
    response = render(
        request,
        "campaigns/preferences.html",
        {
            "wording": WORDING,
            "contact": contact,
            "token": token,
            "saved": saved,
            "subscribed": subscribed and address_suppression(contact.email) is None,
            "can_resubscribe": contact_may_resubscribe(contact),
            "topics": _listed_topics(contact),
        },
    )
    return _no_cache(response)


def _listed_topics(contact: Contact) -> list[dict]:
    topics = list(Topic.objects.filter(listed=True))
    states = topic_states(contact, topics)
    return [{"topic": t, "subscribed": states[t.pk]} for t in topics]


def _save_topics(
    request: HttpRequest, link: _Link, shown: list[str], ticked: list[str]
) -> None:
    """The boxes the page showed, as the person left them: a topic listed since
    the page was rendered (or one not listed, whatever the form says) is not theirs
    to have chosen."""
    shown_ids = [int(pk) for pk in shown if pk.isdigit() and len(pk) < 19]
    for topic in Topic.objects.filter(listed=True, pk__in=shown_ids):
        topic_set(
            contact=link.contact,
            topic=topic,
            subscribed=str(topic.pk) in ticked,
            proof=link_proof(
                request,
                link,
                source=Source.PREFERENCES,
                wording=_topic_wording(topic),
            ),
        )


def _topic_wording(topic: Topic) -> str:
    """A topic's checkbox as the preference page shows it, under its legend."""
    label = f"{topic.name} — {topic.description}" if topic.description else topic.name
    return f"{WORDING['topics']}: {label}"


def _one_click_wording(topic: Topic | None = None) -> str:
    """The unsubscribe page's button, which a mail client's one-click posts too."""
    if topic is None:
        return WORDING["one_click"]
    return f"{WORDING['one_click']} from “{topic.name}”"


@require_http_methods(["GET"])
def view_in_browser(request: HttpRequest, token: str) -> HttpResponse:
    link = _resolve(token, VIEW_SALT)
    if link is None or link.message is None:
        return _invalid_link()
    # A test's link (a test send, or admin's view of a message) shows the email
    # with links that change nothing, as the copy it came from had.
    rendered = message_render(link.message, inert=link.is_test)
    response = HttpResponse(rendered.html)
    # Marketer HTML on our origin: no scripts, no forms, no plugins.
    response["Content-Security-Policy"] = "sandbox; script-src 'none'"
    return _no_cache(response)


@require_http_methods(["GET"])
def click(request: HttpRequest, token: str) -> HttpResponse:
    """Own click tracking: a signed (message, url) pair, never an open redirect."""
    data = read_click_token(token)
    if data is None:
        return HttpResponseBadRequest("This link is invalid or has been altered.")
    message_id, url = data
    message = Message.objects.filter(pk=message_id).select_related("template").first()
    if message is not None:
        _raise_delivery(message, Message.Delivery.CLICKED, "clicked_at", clock.now())
        if message.is_test or message.kind == Message.Kind.NOTIFICATION:
            # A test send (or a team notification) went to staff, not the contact:
            # its click says nothing of them and must start no workflow for them
            # (as for the ESP's click events, tracking.py).
            return HttpResponseRedirect(url)
        event_record(
            contact_id=message.contact_id,
            name="email_clicked",
            properties={
                "message_id": message.pk,
                "template": message.template.name,
                "url": url,
                "esp": "nudge",
            },
            # one click event per message, link and minute: a double click is one
            dedupe_key=f"click:{message.pk}:{_digest(url)}:{clock.now():%Y%m%d%H%M}",
            by_contact=True,
        )
    return HttpResponseRedirect(url)


def _no_cache(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
