"""Production refuses the development key, and warns on http-only settings behind an
https SITE_URL (apps/core/checks.py), in the real commands and entry points."""

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core import checks

from apps.core.checks import (
    https_settings_match_site_url,
    secret_key_is_not_the_development_one,
)
from tests.processes import ROOT, database_url

DEVELOPMENT_KEY = django_settings.DEVELOPMENT_SECRET_KEY


def _ids(messages) -> set[str]:
    return {message.id for message in messages}


def test_the_development_key_is_an_error_with_debug_off(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = DEVELOPMENT_KEY
    errors = secret_key_is_not_the_development_one()
    assert _ids(errors) == {"nudge.E001"}
    assert all(error.level == checks.ERROR for error in errors)


def test_the_development_key_as_a_fallback_is_an_error_too(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = "a-real-key-" + "k" * 40
    settings.SECRET_KEY_FALLBACKS = [DEVELOPMENT_KEY]
    assert _ids(secret_key_is_not_the_development_one()) == {"nudge.E002"}


def test_the_demo_may_use_the_development_key(settings):
    settings.DEBUG = True
    settings.SECRET_KEY = DEVELOPMENT_KEY
    assert secret_key_is_not_the_development_one() == []


def test_an_https_site_without_proxy_header_secure_cookies_or_hsts_is_warned(
    settings,
):
    # given an https site with none of them set
    settings.DEBUG = False
    settings.SITE_URL = "https://nudge.example.com"
    settings.SECURE_PROXY_SSL_HEADER = None
    settings.SESSION_COOKIE_SECURE = False
    settings.SECURE_HSTS_SECONDS = 0
    # when checked, then one warning each
    warnings = https_settings_match_site_url()
    assert _ids(warnings) == {"nudge.W001", "nudge.W002", "nudge.W003"}
    assert all(warning.level == checks.WARNING for warning in warnings)


def test_an_https_site_with_them_set_is_not_warned(settings):
    settings.DEBUG = False
    settings.SITE_URL = "https://nudge.example.com"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 3600
    assert https_settings_match_site_url() == []


def test_an_http_site_is_not_warned(settings):
    settings.DEBUG = False
    settings.SITE_URL = "http://127.0.0.1:8000"
    settings.SECURE_HSTS_SECONDS = 0
    assert https_settings_match_site_url() == []


# -- the real commands and entry points ----------------------------------------------


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess:
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SECRET_KEY", "DEBUG", "SITE_URL"}
    }
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env={**environ, "DATABASE_URL": database_url(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["check", "--deploy"],
        ["rqworker", "--burst", "default"],
        ["nudge_scheduler", "--once"],
    ],
    ids=["check --deploy", "rqworker", "nudge_scheduler"],
)
def test_commands_refuse_to_start_on_the_development_key_with_debug_off(db, command):
    # when started in production (DEBUG unset) without a SECRET_KEY
    result = _run("manage.py", *command)
    # then they stop, naming the problem
    assert result.returncode != 0
    assert "nudge.E001" in result.stderr


def test_the_wsgi_entry_point_refuses_the_development_key_with_debug_off(db):
    result = _run("-c", "import config.wsgi")
    assert result.returncode != 0
    assert "nudge.E001" in result.stderr


def test_the_demo_with_debug_on_starts_on_the_development_key(db):
    result = _run("manage.py", "check", DEBUG="1")
    assert result.returncode == 0, result.stderr
    result = _run("-c", "import config.wsgi", DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_https_warnings_are_printed_but_stop_nothing(db):
    result = _run(
        "manage.py",
        "check",
        SECRET_KEY="a-real-key-" + "k" * 40,
        SITE_URL="https://nudge.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "nudge.W001" in result.stderr
    assert "nudge.W003" in result.stderr
