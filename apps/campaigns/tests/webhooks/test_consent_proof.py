"""An ESP's bounce, complaint or unsubscribe is recorded as proof: the ESP, the
message, what it said; no IP (the ESP's server called, not the person)."""

import pytest

from apps.contacts.consent import Source
from apps.contacts.models import ConsentRecord

from .common import ESP_NAMES, ESPS, MARKS
from .hooks import hook_for, post

pytestmark = MARKS


@pytest.mark.parametrize("esp", ESPS)
@pytest.mark.parametrize(
    ("kind", "consent"),
    [
        ("bounced", "bounced"),
        ("complained", "complained"),
        ("unsubscribed", "unsubscribed"),
    ],
)
def test_the_esp_s_word_on_consent_is_recorded_with_the_esp_and_the_message(
    client, esp, kind, consent, contact, sent_message
):
    # given
    message = sent_message(esp)
    # when the ESP reports it, and reports it again
    assert post(client, hook_for(esp, kind, message)).status_code == 200
    assert post(client, hook_for(esp, kind, message)).status_code == 200
    # then one record says what the ESP said
    (record,) = ConsentRecord.objects.filter(contact=contact)
    assert (record.previous, record.value) == ("subscribed", consent)
    assert (record.source, record.who) == (Source.ESP, ESP_NAMES[esp])
    assert record.form == f"message #{message.pk}"
    assert record.wording.startswith(kind)
    assert record.ip is None


@pytest.mark.parametrize("esp", ESPS)
def test_an_open_or_a_delivery_records_no_consent(client, esp, contact, sent_message):
    message = sent_message(esp)
    post(client, hook_for(esp, "delivered", message))
    post(client, hook_for(esp, "opened", message))
    assert not ConsentRecord.objects.exists()
