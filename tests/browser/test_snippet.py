"""static/nudge/nudge.js in headless Chromium, against a live server.

The demo shop end to end; consent gating; an offline period; the beacon on page hide;
engagement. Nothing sleeps: the tests wait for the snippet's flush() promise (which
resolves after the server has answered, so the rows are committed) or poll the
database with a deadline, and move the page's clock with Playwright's fake timers.
"""

import time
from collections import Counter

import pytest
from django.urls import reverse

from apps.contacts.models import Contact, Identity
from apps.events.demo import DEMO_SHOP_KEY, demo_source
from apps.events.models import Event, PendingEvent

from .conftest import WAIT_SECONDS

pytestmark = pytest.mark.browser

LOADED = "() => Boolean(window.nudge && window.nudge.loaded)"
STORED_QUEUE = f"nudge_queue:{DEMO_SHOP_KEY}"


@pytest.fixture
def shop(transactional_db):
    return demo_source()


def flush(page) -> dict:
    """Send what the snippet has queued; resolves once the server has answered."""
    page.wait_for_function(LOADED)
    return page.evaluate("() => nudge('flush')")


def wait_until(page, condition, *, what: str, timeout: float = WAIT_SECONDS):
    """Poll ``condition`` (a database read) until it is truthy, or fail.

    page.wait_for_timeout, not time.sleep: Playwright keeps serving the page (routes,
    events) while the test waits.
    """
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout}s waiting for {what}")
        page.wait_for_timeout(50)
    return result


def nudge_cookie(page) -> str | None:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies.get("nudge_aid")


def test_a_shoppers_visit_arrives_on_the_contact_named_at_checkout(
    page, shop, run_jobs
):
    # given a visitor who arrives from a newsletter and browses anonymously
    page.goto(
        reverse("demo:shop") + "?utm_source=newsletter&utm_medium=email"
        "&utm_campaign=spring"
    )
    page.get_by_role("link", name="Trail boots").click()
    page.get_by_role("button", name="Add to cart").click()
    page.get_by_role("link", name="View cart").click()
    page.get_by_role("cell", name="Trail boots", exact=True).wait_for()
    page.get_by_role("link", name="Checkout").click()

    # when they check out with their email
    page.get_by_label("Email").fill("ada.shopper@example.com")
    page.get_by_label("First name").fill("Ada")
    page.get_by_role("button", name="Place order").click()
    page.wait_for_url("**/demo/shop/thanks/**")
    order_id = page.locator("#order-id").text_content()

    # then, once sent, every event is on one contact: the anonymous history merged
    assert flush(page) == {"pending": 0, "error": None}
    contact = Contact.objects.get()
    assert contact.email == "ada.shopper@example.com"
    assert contact.first_name == "Ada"
    assert Identity.objects.get(anonymous_id=nudge_cookie(page)).contact == contact
    events = list(Event.objects.filter(source=shop).order_by("timestamp", "pk"))
    assert {event.contact_id for event in events} == {contact.pk}

    # ... in the order they happened, with their properties
    # (page_engaged needs 5 visible seconds on a page; a slow run may send one)
    names = [event.name for event in events if event.name != "page_engaged"]
    assert [name for name in names if name != "page"] == [
        "product_viewed",
        "add_to_cart",
        "cart_viewed",
        "checkout_started",
        "identify",
        "order_completed",
    ]
    pages = [event for event in events if event.name == "page"]
    assert [event.properties["path"] for event in pages] == [
        "/demo/shop/",
        "/demo/shop/p/sku-boots/",
        "/demo/shop/cart/",
        "/demo/shop/checkout/",
        "/demo/shop/thanks/",
    ]
    by_name = {event.name: event for event in events}
    assert by_name["product_viewed"].properties == {
        "product_id": "sku-boots",
        "name": "Trail boots",
        "price": 129.0,
        "category": "shoes",
        "currency": "USD",
    }
    added = by_name["add_to_cart"].properties
    assert added["product_id"] == "sku-boots"
    assert added["cart_id"].startswith("cart-")
    assert (added["quantity"], added["price"], added["cart_total"]) == (1, 129, 129)
    assert by_name["cart_viewed"].properties["cart_id"] == added["cart_id"]
    assert by_name["checkout_started"].properties["total"] == 129
    assert by_name["identify"].properties == {
        "traits": {"email": "ada.shopper@example.com", "firstName": "Ada"}
    }
    assert by_name["order_completed"].properties == {
        "order_id": order_id,
        "cart_id": added["cart_id"],
        "total": 129,
        "currency": "USD",
        "products": [
            {
                "product_id": "sku-boots",
                "name": "Trail boots",
                "price": 129,
                "quantity": 1,
            }
        ],
    }

    # ... and the context a marketer segments on
    landing = pages[0].context
    assert landing["campaign"] == {
        "source": "newsletter",
        "medium": "email",
        "name": "spring",
    }
    assert landing["library"]["name"] == "nudge.js"
    assert landing["page"]["path"] == "/demo/shop/"
    assert landing["userAgent"] and landing["locale"] and landing["timezone"]
    assert "campaign" not in by_name["product_viewed"].context
    assert (
        by_name["product_viewed"].context["page"]["path"] == "/demo/shop/p/sku-boots/"
    )

    # when the workers run, then every event is processed
    run_jobs()
    assert not PendingEvent.objects.exists()


def test_with_require_consent_nothing_is_stored_or_sent_before_the_visitor_accepts(
    page, shop
):
    api_requests: list[str] = []
    page.on(
        "request",
        lambda request: "/api/v1/" in request.url and api_requests.append(request.url),
    )
    page.goto(reverse("demo:consent"))

    # when the page tracks before the visitor answers the banner
    page.wait_for_function(LOADED)
    page.evaluate("() => nudge('track', 'before_consent', {})")
    page.evaluate("() => nudge('identify', 'user-1', {email: 'early@example.com'})")

    # then nothing is sent, no cookie set and nothing stored
    assert flush(page) == {"pending": 0, "error": None}
    assert api_requests == []
    assert nudge_cookie(page) is None
    assert page.evaluate("() => Object.keys(localStorage)") == []

    # when they accept and then do something
    page.get_by_role("button", name="Accept").click()
    page.get_by_role("button", name="Send a test event").click()

    # then this page's view and what follows arrive, and nothing from before
    assert flush(page) == {"pending": 0, "error": None}
    assert api_requests
    names = sorted(Event.objects.values_list("name", flat=True))
    assert names == ["consent_demo_clicked", "page"]
    contact = Identity.objects.get(anonymous_id=nudge_cookie(page)).contact
    assert not contact.email
    assert not contact.external_id

    # when they come back later, then the answer is remembered
    page.reload()
    assert flush(page) == {"pending": 0, "error": None}
    assert Event.objects.filter(name="page", contact=contact).count() == 2


def test_declining_consent_forgets_the_visitor_and_sends_nothing_more(page, shop):
    # given a visitor who accepted
    page.goto(reverse("demo:consent"))
    page.get_by_role("button", name="Accept").click()
    assert flush(page) == {"pending": 0, "error": None}
    assert nudge_cookie(page)
    sent = Event.objects.count()

    # when they change their mind and then do something
    page.get_by_role("button", name="Decline").click()
    page.get_by_role("button", name="Send a test event").click()

    # then the snippet has forgotten them and sent nothing more
    assert flush(page) == {"pending": 0, "error": None}
    assert nudge_cookie(page) is None
    assert (
        page.evaluate(
            "() => Object.keys(localStorage).filter(key => key.startsWith('nudge'))"
        )
        == []
    )
    assert Event.objects.count() == sent


def test_events_tracked_while_the_api_is_unreachable_arrive_once_when_it_is_back(
    page, shop
):
    # given an API that answers 503, then drops the connection
    outage = {"mode": "503", "attempts": 0}

    def api(route):
        outage["attempts"] += 1
        if outage["mode"] == "503":
            route.fulfill(status=503, body="down for maintenance")
        elif outage["mode"] == "offline":
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/api/v1/batch", api)
    # Chromium lets a beacon sent while a page unloads bypass Playwright's routes, so
    # the outage takes sendBeacon too: it accepts the data and loses it, as offline.
    page.add_init_script("navigator.sendBeacon = () => true;")

    # when the visitor clicks around, and moves to another page, during the outage
    page.goto(reverse("demo:shop"))
    page.wait_for_function(LOADED)
    for n in range(3):
        page.evaluate(f"() => nudge('track', 'offline_click', {{n: {n}}})")
    assert flush(page) == {"pending": 4, "error": "HTTP 503"}
    outage["mode"] = "offline"
    page.get_by_role("link", name="Rain jacket").click()
    page.wait_for_url("**/p/sku-jacket/")
    result = flush(page)
    # (leaving a page seen for 5 s queues a page_engaged too: a slow run may)
    engaged = 1 if result["pending"] == 7 else 0
    assert result["pending"] == 6 + engaged
    assert result["error"].startswith("TypeError")

    # then nothing reached the server, and nothing was lost
    assert Event.objects.count() == 0
    assert outage["attempts"] >= 2

    # when the API is back, then the snippet's own retry delivers all of it
    outage["mode"] = "up"
    wait_until(
        page,
        lambda: Event.objects.count() >= 6 + engaged,
        what="the queued events to arrive",
    )
    page.wait_for_function(f"() => localStorage.getItem('{STORED_QUEUE}') === null")

    # ... each exactly once, with the time it happened, not the time it arrived
    assert flush(page) == {"pending": 0, "error": None}
    events = list(Event.objects.exclude(name="page_engaged"))
    assert Counter(event.name for event in events) == {
        "page": 2,
        "offline_click": 3,
        "product_viewed": 1,
    }
    assert Event.objects.filter(name="page_engaged").count() == engaged
    clicks = [event for event in events if event.name == "offline_click"]
    assert sorted(event.properties["n"] for event in clicks) == [0, 1, 2]
    assert all(event.timestamp < event.received_at for event in clicks)


def test_an_event_tracked_just_before_leaving_the_page_is_sent_by_beacon(page, shop):
    # given a page whose snippet has loaded (and queued its page view)
    page.goto(reverse("demo:shop"))
    page.wait_for_function(LOADED)

    # when it tracks and the visitor leaves at once, with fetch out of the picture
    page.evaluate(
        """() => {
            window.fetch = () => Promise.reject(new TypeError('no fetch in this test'));
            nudge('track', 'left_in_a_hurry', {why: 'closed the tab'});
        }"""
    )
    page.goto("about:blank")

    # then sendBeacon, on pagehide, delivered it
    event = wait_until(
        page,
        lambda: Event.objects.filter(name="left_in_a_hurry").first(),
        what="the beaconed event",
    )
    assert event.properties == {"why": "closed the tab"}
    assert Event.objects.filter(name="page", contact=event.contact).count() == 1


def test_page_engaged_counts_visible_seconds_and_scroll_depth(page, shop):
    # given a small window, so the home page scrolls, and a clock the test moves
    page.set_viewport_size({"width": 800, "height": 300})
    page.clock.install()

    # when the visitor bounces off the home page in 2 s
    page.goto(reverse("demo:shop"))
    page.wait_for_function(LOADED)
    page.clock.run_for(2000)
    started = time.monotonic()
    page.get_by_role("link", name="Wool socks").click()

    # ... then reads a product page for 7 s, scrolls to the end, and leaves
    page.wait_for_function(LOADED)
    page.clock.run_for(7000)
    page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    page.goto("about:blank")
    real_seconds = time.monotonic() - started

    # then one page_engaged arrives, for the product page only
    engaged = wait_until(
        page,
        lambda: list(Event.objects.filter(name="page_engaged")),
        what="page_engaged",
    )
    assert len(engaged) == 1
    properties = engaged[0].properties
    assert properties["path"] == "/demo/shop/p/sku-socks/"
    assert properties["percent"] == 100
    # the fake 7 s, plus however long the real page took to load and leave
    assert 7 <= properties["seconds"] <= 7 + round(real_seconds) + 1


def test_a_batch_the_api_rejects_is_split_until_only_the_bad_message_is_dropped(
    page, shop
):
    warnings: list[str] = []
    page.on(
        "console",
        lambda message: message.type == "warning" and warnings.append(message.text),
    )
    page.goto(reverse("demo:shop"))
    page.wait_for_function(LOADED)

    # when one message of a batch is invalid (the API answers 400 for the whole batch)
    page.evaluate(
        """() => {
            nudge('track', 'before', {});
            nudge('identify', null, {email: 'not an email'});
            nudge('track', 'after', {});
        }"""
    )

    # then the others arrive, and the bad one is dropped with a word in the console
    assert flush(page) == {"pending": 0, "error": None}
    assert sorted(Event.objects.values_list("name", flat=True)) == [
        "after",
        "before",
        "page",
    ]
    assert any("HTTP 400" in text and "not an email" in text for text in warnings)


def test_the_stored_queue_keeps_only_the_newest_messages_past_its_cap(page, shop):
    # given an API that is down
    page.route("**/api/v1/batch", lambda route: route.fulfill(status=503))
    page.goto(reverse("demo:shop"))
    page.wait_for_function(LOADED)

    # when a page tracks more than the queue holds
    page.evaluate(
        "() => { for (let n = 0; n < 520; n++) nudge('track', 'tick', {n}); }"
    )

    # then the oldest are dropped, the newest kept
    stored = page.evaluate(f"() => JSON.parse(localStorage.getItem('{STORED_QUEUE}'))")
    assert len(stored) == 500
    assert [m["properties"]["n"] for m in stored[-2:]] == [518, 519]


def test_a_user_id_is_sent_on_later_pages_until_reset(page, shop):
    # given a visitor who logs in on one page
    page.goto(reverse("demo:shop"))
    page.wait_for_function(LOADED)
    first_visitor = nudge_cookie(page)
    page.evaluate("() => nudge('identify', 'user-42', {plan: 'pro'})")

    # when they go on to another page, then log out
    page.get_by_role("link", name="Rain jacket").click()
    page.wait_for_url("**/p/sku-jacket/")
    assert flush(page) == {"pending": 0, "error": None}
    page.evaluate("() => nudge('reset')")
    page.evaluate("() => nudge('track', 'after_logout', {})")
    assert flush(page) == {"pending": 0, "error": None}

    # then the product view carried the user id, and after reset a new visitor begins
    viewed = Event.objects.get(name="product_viewed")
    assert viewed.contact.external_id == "user-42"
    assert viewed.contact.attributes == {"plan": "pro"}
    after = Event.objects.get(name="after_logout")
    assert after.contact != viewed.contact
    assert nudge_cookie(page) not in (None, first_visitor)
    assert (
        Identity.objects.get(anonymous_id=nudge_cookie(page)).contact == after.contact
    )
