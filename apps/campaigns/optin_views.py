"""The page a double opt-in confirmation email links to (see optin.py)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.contacts.consent import Source
from apps.contacts.models import ConsentStatus

from .models import Message
from .optin import confirmation_link_void, contact_confirm
from .tokens import CONFIRM_SALT
from .views import WORDING, _invalid_link, _no_cache, _resolve, _test_link, link_proof


# No cookies, so no CSRF token: the signed link is the authority, for its contact
# only. A GET (the person, or a mail scanner fetching links) only asks; the button
# POSTs.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    link = _resolve(token, CONFIRM_SALT)
    if link is None:
        return _invalid_link()
    if link.is_test:
        return _test_link(request, link)
    if link.message is None or link.message.kind != Message.Kind.CONFIRMATION:
        # Only a confirmation email's own link confirms.
        return _invalid_link()
    contact = link.contact
    void = confirmation_link_void(message=link.message, contact=contact)
    if void is not None and contact.email_consent == ConsentStatus.PENDING:
        response = render(request, "campaigns/confirm.html", {"void": void}, status=410)
        return _no_cache(response)
    if request.method == "POST":
        contact_confirm(
            contact=contact,
            message=link.message,
            proof=link_proof(
                request, link, source=Source.CONFIRMATION, wording=WORDING["confirm"]
            ),
        )
        contact.refresh_from_db(fields=["email_consent"])
    response = render(
        request,
        "campaigns/confirm.html",
        {
            "wording": WORDING,
            "contact": contact,
            "token": token,
            "pending": contact.email_consent == ConsentStatus.PENDING,
            "subscribed": contact.email_consent == ConsentStatus.SUBSCRIBED,
        },
    )
    return _no_cache(response)
