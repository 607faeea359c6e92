"""Nudge settings, read from the environment.

Every knob has a default that works on a fresh machine: SQLite in ``var/`` and the
embedded Redis that ``scripts/nudge.py run`` starts on a unix socket in ``var/``.
Production sets ``DATABASE_URL``, ``REDIS_URL``, ``SECRET_KEY`` and ``ALLOWED_HOSTS``.
"""

import json
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("NUDGE_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def envlist(name: str, default: str = "") -> list[str]:
    return [
        item.strip()
        for item in os.environ.get(name, default).split(",")
        if item.strip()
    ]


DEBUG = envbool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "nudge-insecure-development-key-change-me")
# Old keys keep signed links (unsubscribe, click tracking) valid after a rotation.
SECRET_KEY_FALLBACKS = envlist("SECRET_KEY_FALLBACKS")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
# Absolute links in email (unsubscribe, view in browser, tracking) start with this.
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "django_rq",
    "anymail",
    "apps.core",
    "apps.contacts",
    "apps.events",
    "apps.segments",
    "apps.campaigns",
    "apps.workflows",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------
# SQLite is only the zero-setup demo default. IMMEDIATE transactions take the write lock
# at BEGIN, so two writers queue on busy_timeout instead of failing with "database is
# locked" half-way through a transaction.
SQLITE_PATH = VAR_DIR / "nudge.sqlite3"
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{SQLITE_PATH}", conn_max_age=envint("DB_CONN_MAX_AGE", 60)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-nudge.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Server-side prepared statements for queries a connection runs this many times
    # (psycopg's default; Django turns them off for poolers). The ingestion and
    # engine statements are the same text every time, so PostgreSQL plans them once
    # per connection instead of once per call. 0 turns them off: needed behind
    # PgBouncer in transaction mode before 1.21.
    prepare_threshold = envint("DB_PREPARE_THRESHOLD", 5)
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        prepare_threshold or None
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and RQ --------------------------------------------------------------------
# Redis only wakes workers; PostgreSQL holds every pending piece of work, and the
# scheduler tick re-enqueues what Redis forgot. Without REDIS_URL we talk to the
# embedded Redis that the run and test commands start on this socket.
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis" / "redis.sock"
REDIS_URL = os.environ.get("REDIS_URL") or f"unix://{EMBEDDED_REDIS_SOCKET}"

NUDGE_QUEUES = ["events", "workflows", "email", "default"]
RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": envint("RQ_JOB_TIMEOUT", 300)}
    for name in NUDGE_QUEUES
}
RQ_SHOW_ADMIN_LINK = True
# apps.core.jobs already enqueues after commit; django-rq must not defer a second time.
RQ = {"COMMIT_MODE": "auto"}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "nudge",
    }
}

# --- Email ---------------------------------------------------------------------------
# Any Django or Anymail backend, e.g. anymail.backends.postmark.EmailBackend. The
# default writes each email to a file in var/mail/ (the demo's mail folder).
EMAIL_BACKEND_PATH = os.environ.get(
    "EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"
)
# Django's SMTP backend cannot tell an error after DATA (the server may have the
# message: uncertain) from one before it (safe to retry); ours can.
if EMAIL_BACKEND_PATH == "django.core.mail.backends.smtp.EmailBackend":
    EMAIL_BACKEND_PATH = "apps.campaigns.smtp.EmailBackend"
MAIL_DIR = os.environ.get("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
_MAILER_OPTIONS: dict = {}
if EMAIL_BACKEND_PATH.endswith("filebased.EmailBackend"):
    _MAILER_OPTIONS = {"file_path": MAIL_DIR}
elif EMAIL_BACKEND_PATH.endswith("smtp.EmailBackend"):
    _MAILER_OPTIONS = {
        "host": os.environ.get("EMAIL_HOST", "localhost"),
        "port": envint("EMAIL_PORT", 25),
        "username": os.environ.get("EMAIL_HOST_USER", ""),
        "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
        "use_tls": envbool("EMAIL_USE_TLS", False),
        "timeout": 30,
    }
MAILERS = {"default": {"BACKEND": EMAIL_BACKEND_PATH, "OPTIONS": _MAILER_OPTIONS}}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Nudge <nudge@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The Message-ID domain: the same Message-ID on every retry lets ESPs and receiving
# servers drop a duplicate.
# Empty: the host of SITE_URL.
NUDGE_MESSAGE_ID_DOMAIN = os.environ.get("NUDGE_MESSAGE_ID_DOMAIN", "")
# CAN-SPAM and GDPR want a postal address in every marketing email's footer.
NUDGE_COMPANY_NAME = os.environ.get("NUDGE_COMPANY_NAME", "Nudge Demo Shop")
NUDGE_POSTAL_ADDRESS = os.environ.get(
    "NUDGE_POSTAL_ADDRESS", "1 Example Street, Springfield, 00000"
)
# A message claimed for sending this long ago, never recorded as sent or failed, had
# its worker die mid-send: it becomes "uncertain" rather than being sent again blindly.
NUDGE_SENDING_TIMEOUT_SECONDS = envint("NUDGE_SENDING_TIMEOUT_SECONDS", 600)
# Transient ESP errors are retried this many times, with growing delays.
NUDGE_SEND_MAX_ATTEMPTS = envint("NUDGE_SEND_MAX_ATTEMPTS", 5)
# Every ANYMAIL_<NAME> variable becomes Anymail's <NAME> setting: ESP credentials
# (ANYMAIL_POSTMARK_SERVER_TOKEN, ANYMAIL_SENDGRID_API_KEY, ...), API URLs
# (ANYMAIL_POSTMARK_API_URL), ANYMAIL_WEBHOOK_SECRET, ANYMAIL_REQUESTS_TIMEOUT.
# Typed as Anymail expects: true/false/yes/no/on/off are booleans (a string "false"
# would be true), REQUESTS_TIMEOUT a number, a value starting with "{" JSON
# (ANYMAIL_AMAZON_SES_CLIENT_PARAMS, ANYMAIL_SEND_DEFAULTS).
_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True}
_BOOLEAN_WORDS |= {"false": False, "no": False, "off": False}


def _anymail_value(name: str, value: str):
    if value.strip().lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.strip().lower()]
    if name == "REQUESTS_TIMEOUT":  # seconds
        return float(value)
    if value.lstrip().startswith("{"):
        return json.loads(value)
    return value


def anymail_settings(environ) -> dict:
    settings = {
        key.removeprefix("ANYMAIL_"): _anymail_value(key.removeprefix("ANYMAIL_"), v)
        for key, v in environ.items()
        if key.startswith("ANYMAIL_") and v
    }
    # boto3 retries a send itself after a read timeout or a closed connection,
    # after Amazon SES may have taken the message: a silent second email. Nudge
    # retries only what it knows was not taken (apps/campaigns/handoff.py), so
    # boto3 tries once unless the operator's client params say otherwise.
    ses = settings.setdefault("AMAZON_SES_CLIENT_PARAMS", {})
    ses.setdefault("config", {}).setdefault("retries", {"total_max_attempts": 1})
    return settings


ANYMAIL = anymail_settings(os.environ)

# --- Ingestion -----------------------------------------------------------------------
# Segment's own limits: 32 KB per call, 500 KB per batch.
NUDGE_MAX_EVENT_BYTES = envint("NUDGE_MAX_EVENT_BYTES", 32 * 1024)
NUDGE_MAX_BATCH_BYTES = envint("NUDGE_MAX_BATCH_BYTES", 500 * 1024)
# Issue 13, item 14: how deep an API body may nest objects and arrays (the body is
# level 1); deeper is refused with a 400 naming the field (apps/core/json_input.py).
NUDGE_MAX_JSON_DEPTH = envint("NUDGE_MAX_JSON_DEPTH", 32)
# Requests per second per write key before 429; a Source can override it.
NUDGE_RATE_LIMIT_PER_SECOND = envint("NUDGE_RATE_LIMIT_PER_SECOND", 2000)
# Consent given to a contact created by ingestion. "subscribed" suits sites whose
# sign-up forms collect consent; "pending" holds marketing mail until it is confirmed.
NUDGE_DEFAULT_CONSENT = os.environ.get("NUDGE_DEFAULT_CONSENT", "subscribed")
# Events not processed this many seconds after they arrived are re-enqueued by the tick.
NUDGE_REENQUEUE_AFTER_SECONDS = envint("NUDGE_REENQUEUE_AFTER_SECONDS", 10)
# An event whose processing failed this many times is set aside (dead-lettered):
# listed in admin (Failed events) to retry once the cause is fixed, and counted in
# /healthz.
NUDGE_EVENT_MAX_ATTEMPTS = envint("NUDGE_EVENT_MAX_ATTEMPTS", 3)
# Seconds before a failed event is tried again (the last for every later attempt):
# long enough for a deploy or a failover to pass, short enough that what the event
# triggers is still timely.
NUDGE_EVENT_RETRY_SECONDS = [
    int(seconds) for seconds in envlist("NUDGE_EVENT_RETRY_SECONDS", "60,600")
]
NUDGE_TICK_SECONDS = envint("NUDGE_TICK_SECONDS", 5)
# A running enrollment (or webhook) untouched this long lost its job (a killed
# worker, a flushed Redis): the tick hands it to a worker again.
NUDGE_STALE_SECONDS = envint("NUDGE_STALE_SECONDS", 30)
# Signs webhook steps' POSTs (X-Nudge-Signature); give receivers this secret.
NUDGE_WEBHOOK_SECRET = (
    os.environ.get("NUDGE_WEBHOOK_SECRET", "") or f"whsec-{SECRET_KEY}"
)
# "Why wasn't this contact enrolled?" records are kept this many days.
NUDGE_DECISIONS_DAYS = envint("NUDGE_DECISIONS_DAYS", 30)

# --- CORS: allowed origins come from the Sources (see apps.events.cors) --------------
CORS_URLS_REGEX = r"^/api/v1/.*$"
# x-retry-count: analytics.js (analytics-next) numbers its retries with it; refused,
# every retry after a 429 or a 5xx fails its preflight and the event is lost.
CORS_ALLOW_HEADERS = [
    "authorization",
    "content-type",
    "content-encoding",
    "x-retry-count",
]
# A 429's Retry-After, which clients wait for (the tracking door sends the same).
CORS_EXPOSE_HEADERS = ["retry-after"]
CORS_PREFLIGHT_MAX_AGE = 3600

# --- The rest ------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(
    parents=True, exist_ok=True
)  # whitenoise warns on every start without it
# Serve straight from the app and project static folders, so the demo needs no
# collectstatic; production may run collectstatic and turn this off.
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", True)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "apps.core.logs.KeyValueFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "rq.worker": {"level": os.environ.get("RQ_LOG_LEVEL", "WARNING")},
    },
}
