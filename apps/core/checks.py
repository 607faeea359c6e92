"""System checks for running Nudge in production (issue 13, item 2).

An Error stops every management command that runs checks (migrate, rqworker,
nudge_scheduler, check --deploy), and config/wsgi.py and config/asgi.py run the same
errors before serving: a production Nudge does not start on a key anyone can read.
Warnings are printed by the same commands and stop nothing.
"""

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def secret_key_is_not_the_development_one(app_configs=None, **kwargs):
    """The development key is in the source: with it, anyone can forge sessions,
    unsubscribe tokens and signed links. The demo (DEBUG on) may use it."""
    if settings.DEBUG:
        return []
    development = settings.DEVELOPMENT_SECRET_KEY
    errors = []
    if development == settings.SECRET_KEY:
        errors.append(
            checks.Error(
                "SECRET_KEY is the built-in development key, and DEBUG is off.",
                hint="Set SECRET_KEY to a long random value, e.g. the output of "
                "python -c 'import secrets; print(secrets.token_urlsafe(50))'.",
                id="nudge.E001",
            )
        )
    if development in settings.SECRET_KEY_FALLBACKS:
        errors.append(
            checks.Error(
                "SECRET_KEY_FALLBACKS holds the built-in development key, so what it "
                "signs is still accepted.",
                hint="Remove it from SECRET_KEY_FALLBACKS.",
                id="nudge.E002",
            )
        )
    return errors


def https_settings_match_site_url(app_configs=None, **kwargs):
    """With an https SITE_URL, cookies and browsers should never fall back to http."""
    if settings.DEBUG or not settings.SITE_URL.startswith("https:"):
        return []
    warnings = []
    if not settings.SECURE_PROXY_SSL_HEADER:
        warnings.append(
            checks.Warning(
                "SITE_URL is https but SECURE_PROXY_SSL_HEADER is not set: behind a "
                "TLS-terminating proxy, Django takes every request for plain http.",
                hint="Set NUDGE_PROXY_SSL_HEADER=X-Forwarded-Proto (or the header "
                "your proxy sets, and always overwrites, to 'https').",
                id="nudge.W001",
            )
        )
    if not (settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE):
        warnings.append(
            checks.Warning(
                "SITE_URL is https but the session or CSRF cookie is not marked "
                "Secure: a browser would send it over plain http.",
                hint="Unset SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE (they "
                "default to on for an https SITE_URL), or set them to true.",
                id="nudge.W002",
            )
        )
    if not settings.SECURE_HSTS_SECONDS:
        warnings.append(
            checks.Warning(
                "SITE_URL is https but HSTS is off: a browser may still be led to the "
                "http site.",
                hint="Set SECURE_HSTS_SECONDS, e.g. 3600 at first, then 31536000.",
                id="nudge.W003",
            )
        )
    return warnings


def register() -> None:
    """Called from CoreConfig.ready."""
    checks.register(secret_key_is_not_the_development_one, checks.Tags.security)
    checks.register(https_settings_match_site_url, checks.Tags.security)


def refuse_to_serve_insecurely() -> None:
    """For the WSGI and ASGI entry points, which Django runs no checks for: raise on
    what the checks above call an error."""
    errors = [
        message
        for message in secret_key_is_not_the_development_one()
        if message.is_serious()
    ]
    if errors:
        raise ImproperlyConfigured(
            "; ".join(f"{error.id}: {error.msg} {error.hint}" for error in errors)
        )
