"""Headless Chromium for the browser tests: Debian's chromium, never a download."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
]
# How long a page may take to show what a test waits for.
WAIT_SECONDS = 10
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser(chromium_path):
    # Playwright's sync API keeps an asyncio loop in this thread while the browser
    # lives, so Django sees an "async context" in the ORM calls the tests make (and in
    # the database flush after each test); they are plain synchronous code all the same.
    with pytest.MonkeyPatch.context() as env, sync_playwright() as playwright:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(request, browser, live_server, transactional_db):
    """A fresh page on the live server; an uncaught error in it fails the test.

    A module may set VIEWPORT = {"width": ..., "height": ...}.
    """
    options = {"base_url": live_server.url}
    viewport = getattr(request.module, "VIEWPORT", None)
    if viewport:
        options["viewport"] = viewport
    context = browser.new_context(**options)
    context.set_default_timeout(WAIT_SECONDS * 1000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    # Close the page (its last beacon goes now), then let the server finish every
    # request before the database is flushed: a write still in flight deadlocks
    # the flush's TRUNCATE, or lands in the next test.
    context.close()
    live_server.in_flight.wait_idle()
    assert errors == [], "uncaught errors in the page"


@pytest.fixture
def admin_page(page):
    """The page, logged in to admin as a superuser."""
    User.objects.create_superuser("marketer", "marketer@example.com", PASSWORD)
    page.goto(reverse("admin:login"))
    page.get_by_label("Username").fill("marketer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{reverse('admin:index')}")
    return page
