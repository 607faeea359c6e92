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


def postgres_options(options: str, **parameters: str) -> str:
    """libpq's ``options`` with ``-c name=value`` added for each non-empty value
    (spaces escaped, as libpq wants)."""
    words = [options.strip()] if options.strip() else []
    for name, value in parameters.items():
        if value.strip():
            words.append("-c " + name + "=" + value.strip().replace(" ", "\\ "))
    return " ".join(words)


DEBUG = envbool("DEBUG", False)
# Public (it is in this file): fine for the demo, which runs with DEBUG on; with DEBUG
# off a system check (apps/core/checks.py) refuses to start on it.
DEVELOPMENT_SECRET_KEY = "nudge-insecure-development-key-change-me"  # noqa: S105
SECRET_KEY = os.environ.get("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
# Old keys keep signed links (unsubscribe, click tracking) valid after a rotation.
SECRET_KEY_FALLBACKS = envlist("SECRET_KEY_FALLBACKS")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
# Absolute links in email (unsubscribe, view in browser, tracking) start with this.
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- HTTPS (issue 13, item 2): apps/core/checks.py warns when SITE_URL is https and
# these are missing. NUDGE_PROXY_SSL_HEADER names the header a TLS-terminating proxy
# sets to "https" (X-Forwarded-Proto); trust it only if the proxy always overwrites it.
_proxy_ssl_header = os.environ.get("NUDGE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")
    if _proxy_ssl_header
    else None
)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", SITE_URL.startswith("https:"))
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", SITE_URL.startswith("https:"))
# Off by default: once a browser has seen it, it refuses plain http for this long.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)

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
    "apps.privacy",
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
    # Issue 13, item 2: one stuck statement, lock wait or forgotten transaction
    # cannot hold the system. PostgreSQL units ("120s", "500ms", "2min"); "0" turns
    # one off. Sent as startup options, which PgBouncer refuses unless "options" is
    # in its ignore_startup_parameters (then set them with ALTER ROLE instead).
    # migrate runs without the statement and idle timeouts (apps/core migrate).
    DATABASES["default"]["OPTIONS"]["options"] = postgres_options(
        DATABASES["default"]["OPTIONS"].get("options", ""),
        statement_timeout=os.environ.get("DB_STATEMENT_TIMEOUT", "120s"),
        lock_timeout=os.environ.get("DB_LOCK_TIMEOUT", "30s"),
        idle_in_transaction_session_timeout=os.environ.get(
            "DB_IDLE_IN_TRANSACTION_TIMEOUT", "120s"
        ),
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
# Issue 13 item 11: with DEBUG off, ESP webhooks are refused (403) until
# ANYMAIL_WEBHOOK_SECRET is set. Mailgun signatures older (or further ahead) than
# this are refused as replays; Mailgun's docs warn its delivery can lag.
NUDGE_MAILGUN_WEBHOOK_MAX_AGE_SECONDS = envint(
    "NUDGE_MAILGUN_WEBHOOK_MAX_AGE_SECONDS", 300
)

# --- Ingestion -----------------------------------------------------------------------
# Segment's own limits: 32 KB per call, 500 KB per batch.
NUDGE_MAX_EVENT_BYTES = envint("NUDGE_MAX_EVENT_BYTES", 32 * 1024)
NUDGE_MAX_BATCH_BYTES = envint("NUDGE_MAX_BATCH_BYTES", 500 * 1024)
# Issue 13, item 14: how deep an API body may nest objects and arrays (the body is
# level 1); deeper is refused with a 400 naming the field (apps/core/json_input.py).
NUDGE_MAX_JSON_DEPTH = envint("NUDGE_MAX_JSON_DEPTH", 32)
# Requests per second per write key before 429; a Source can override it.
NUDGE_RATE_LIMIT_PER_SECOND = envint("NUDGE_RATE_LIMIT_PER_SECOND", 2000)
# Issue 13, item 6: a browser key's calls per client address (a `limits` string,
# "30/second;600/minute"; empty: no such limit), and where that address comes from:
# a header trusted proxies set (X-Forwarded-For) and how many of them there are.
# Unset, the header is not trusted and REMOTE_ADDR is the client.
NUDGE_RATE_LIMIT_PER_IP = os.environ.get("NUDGE_RATE_LIMIT_PER_IP", "30/second")
NUDGE_TRUSTED_PROXY_HEADER = os.environ.get("NUDGE_TRUSTED_PROXY_HEADER", "")
NUDGE_TRUSTED_PROXY_COUNT = envint("NUDGE_TRUSTED_PROXY_COUNT", 1)
# Consent given to a contact created by ingestion. "subscribed" suits sites whose
# sign-up forms collect consent; "pending" holds marketing mail until it is confirmed.
NUDGE_DEFAULT_CONSENT = os.environ.get("NUDGE_DEFAULT_CONSENT", "subscribed")
# Double opt-in for every source (else per source, in admin): new people stay
# "pending" until they confirm by the emailed link; the unconfirmed are deleted
# this many days after their confirmation email. The email's template is the
# EmailTemplate of this name (created by migration, editable).
NUDGE_DOUBLE_OPT_IN = envbool("NUDGE_DOUBLE_OPT_IN", False)
NUDGE_DOUBLE_OPT_IN_PURGE_DAYS = envint("NUDGE_DOUBLE_OPT_IN_PURGE_DAYS", 30)
NUDGE_DOUBLE_OPT_IN_TEMPLATE = os.environ.get(
    "NUDGE_DOUBLE_OPT_IN_TEMPLATE", "Confirm your subscription"
)
# A (source, messageId) repeated within this many days is a duplicate and changes
# nothing; after it, it is a new event (apps/events/models.py EventKey). The Segment
# spec's senders retry within hours; the window bounds the dedupe table's size.
NUDGE_EVENT_DEDUPE_DAYS = envint("NUDGE_EVENT_DEDUPE_DAYS", 35)
# Events not processed this many seconds after they arrived are re-enqueued by the tick.
NUDGE_REENQUEUE_AFTER_SECONDS = envint("NUDGE_REENQUEUE_AFTER_SECONDS", 10)
# An event whose processing failed this many times is set aside (dead-lettered):
# listed in admin (Failed events) to retry once the cause is fixed, and counted in
# /healthz.
NUDGE_EVENT_MAX_ATTEMPTS = envint("NUDGE_EVENT_MAX_ATTEMPTS", 3)
# Issue 13, item 3: /healthz gives its details (queues, backlog, dead letters,
# warnings) to staff and to "Authorization: Bearer <this>"; to others only ok / not
# ok. Empty: no token opens them.
NUDGE_HEALTH_TOKEN = os.environ.get("NUDGE_HEALTH_TOKEN", "")
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
# Signs webhook steps' POSTs (X-Nudge-Signature); receivers are given it. Issue 13,
# item 1: never derived from SECRET_KEY. Empty: one is generated and stored in the
# database on first use (apps/core/secrets.py); `manage.py nudge_webhook_secret`
# prints it, and admin shows it to those allowed to view signing secrets.
NUDGE_WEBHOOK_SECRET = os.environ.get("NUDGE_WEBHOOK_SECRET", "")
# Retention (docs/privacy.md): how many days each kind of data is kept; 0 keeps it
# for ever. A daily job (apps/privacy/retention) deletes what is older.
NUDGE_RETAIN_EVENTS_DAYS = envint("NUDGE_RETAIN_EVENTS_DAYS", 396)  # 13 months
# The trace (StepRun) of enrollments that finished this long ago.
NUDGE_RETAIN_STEP_RUNS_DAYS = envint("NUDGE_RETAIN_STEP_RUNS_DAYS", 180)
# "Why wasn't this contact enrolled?" records. NUDGE_DECISIONS_DAYS is its older name.
NUDGE_RETAIN_DECISIONS_DAYS = envint(
    "NUDGE_RETAIN_DECISIONS_DAYS", envint("NUDGE_DECISIONS_DAYS", 30)
)
# ESP tracking events seen (their ids stop replays; ESPs retry for days, not months).
NUDGE_RETAIN_ESP_EVENTS_DAYS = envint("NUDGE_RETAIN_ESP_EVENTS_DAYS", 90)
NUDGE_RETAIN_SEGMENT_REFRESHES_DAYS = envint("NUDGE_RETAIN_SEGMENT_REFRESHES_DAYS", 90)
# Delivered or failed webhook POSTs of finished enrollments (payloads name the contact).
NUDGE_RETAIN_WEBHOOK_DELIVERIES_DAYS = envint(
    "NUDGE_RETAIN_WEBHOOK_DELIVERIES_DAYS", 30
)
# Contacts that never identified (no email, no user id), unseen this long, are
# deleted with their events and everything else of theirs.
NUDGE_RETAIN_ANONYMOUS_CONTACTS_DAYS = envint(
    "NUDGE_RETAIN_ANONYMOUS_CONTACTS_DAYS", 30
)
# Privacy (docs/privacy.md). IP addresses of browser calls (any context.ip of an
# event, whichever key sent it) and consent records are kept with their host part
# zeroed unless this is off.
NUDGE_ANONYMISE_IP = envbool("NUDGE_ANONYMISE_IP", True)
# A person's data export: where the archives are written, and for how many hours
# one can be downloaded before it is deleted.
NUDGE_EXPORT_DIR = os.environ.get("NUDGE_EXPORT_DIR", str(VAR_DIR / "exports"))
NUDGE_EXPORT_HOURS = envint("NUDGE_EXPORT_HOURS", 72)
# Events are stored without context.userAgent (and context.userAgentData) if on.
NUDGE_DROP_USER_AGENT = envbool("NUDGE_DROP_USER_AGENT", False)
# Webhook destinations (issue 13, item 10): steps post to public addresses only.
# Internal receivers are listed here: host names (".corp.example" for every
# subdomain), addresses or CIDR ranges, e.g. "10.0.0.0/8,hooks.internal".
NUDGE_WEBHOOK_ALLOWED_HOSTS = envlist("NUDGE_WEBHOOK_ALLOWED_HOSTS")
# Seconds one webhook POST may take in all: connecting, sending, reading the answer.
NUDGE_WEBHOOK_TIMEOUT_SECONDS = envint("NUDGE_WEBHOOK_TIMEOUT_SECONDS", 10)

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
