"""Oversight settings: one module, configured by the environment only (12-factor).

Defaults are the safe production ones (DEBUG off, HTTPS-only cookies, HSTS). `make run` and
the test runner set `DEBUG=true` and the embedded services explicitly. A value that cannot be
parsed stops the process with the variable's name (see `oversight.env`).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from kombu import Queue

from oversight import celery_plan, logs
from oversight.env import env_bool, env_float, env_int, env_list, env_networks, env_str, var_dir

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = var_dir()

DEBUG = env_bool("DEBUG", default=False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-set-SECRET_KEY-in-production"  # noqa: S105
# Earlier keys, while rotating SECRET_KEY: what they signed stays valid, and the webhook secrets
# encrypted under them still decrypt (agents.webhook_secrets).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "accounts",
    "agents",
    "approvals",
    "audit",
    "budgets",
    "guardrails",
    "controls",
    "grants",
    "monitoring",
    "slack",
    "demo",
]

MIDDLEWARE = [
    "oversight.logs.RequestContextMiddleware",  # the request id, for every line logged after it
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "oversight.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, so that it sees the outcome of authentication (django-axes' requirement).
    "axes.middleware.AxesMiddleware",
]
# The agent API's own stack (oversight.handlers, oversight.asgi): agents send a bearer key on
# every call and read JSON, so of the stack above they need only the security headers and the
# Host check. Each of the others would cost a thread hop per hook (~0.15 ms of CPU each on the
# bench machine).
API_MIDDLEWARE = [
    "oversight.logs.RequestContextMiddleware",  # on the event loop: a contextvar and a header
    "oversight.middleware.ApiSecurityMiddleware",
]

ROOT_URLCONF = "oversight.urls"
ASGI_APPLICATION = "oversight.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.navigation",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'oversight.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("OVERSIGHT_DB_CONN_MAX_AGE", 0, minimum=0)
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded database is shared by web, worker and beat: WAL lets readers proceed while
    # one process writes; IMMEDIATE transactions take the write lock up front so concurrent
    # writers queue (up to the timeout) instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # Django's backend, with a pool that rides out the server going away (oversight.postgres).
    DATABASES["default"]["ENGINE"] = "oversight.postgres"
    # Server-side binding: parameters travel separately from the SQL instead of being quoted
    # into it by the client.
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
    # A server whose host is gone is given up after this long, not after the TCP stack's minutes.
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
    # Prepared statements (Django turns them off by default): psycopg prepares a statement the
    # sixth time a connection runs it, and from then on PostgreSQL neither parses nor plans it
    # again. Measured per create on the bench server: ~0.95 -> ~0.68 ms of PostgreSQL CPU (and,
    # in-process, ~0.3 ms less in the web process). Two costs: PgBouncer in transaction mode
    # needs max_prepared_statements (1.21+), else turn this off; and a statement prepared before
    # a migration that changes the columns it returns fails once ("cached plan must not change
    # result type"), so start web processes after migrating (compose's `web` waits for
    # `migrate`).
    if env_bool("OVERSIGHT_DB_PREPARED_STATEMENTS", default=True):
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
    else:
        DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
    # No JIT: it pays off for long analytical queries, not for this OLTP workload, where a
    # planner overestimate once turned a 20 ms page into 700 ms of compiling.
    DATABASES["default"]["OPTIONS"].setdefault("options", "-c jit=off")
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" and env_bool(
    "OVERSIGHT_DB_POOL", default=True
):
    # Under ASGI each request runs on a thread of its own, so per-thread persistent
    # connections do not help; a process-wide pool (psycopg_pool) hands connections out per
    # request and takes them back when Django closes them.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env_int("OVERSIGHT_DB_POOL_MAX", 20, minimum=1),
        "timeout": 10,
    }
else:
    # Persistent connections (OVERSIGHT_DB_CONN_MAX_AGE) are checked before each request uses
    # one, so a connection the server dropped (a restart) is replaced instead of failing it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Production runs web, worker and beat as a database role that does not own the tables (SPEC
# §9.4): name it here for `migrate` (run as the owner) to grant it its rights (audit.roles).
OVERSIGHT_DB_APP_ROLE = env_str("OVERSIGHT_DB_APP_ROLE", "")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # A consumer waits on Redis in 5 s polls (BZPOPMIN); redis-py's default 5 s socket
            # timeout would cut each idle wait short and close every quiet WebSocket.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "socket_connect_timeout": 2}],
            "prefix": "oversight:ws",
        },
    }
}

# --- Celery --------------------------------------------------------------------------------

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# Queues (SPEC §9.6), each consumed by a worker pool of its own (oversight.processes.POOLS):
# timers never wait behind a callback to a slow server or a stalled mail server.
CELERY_TASK_DEFAULT_QUEUE = "default"
# Declared, not only routed to: `celery purge` and app.control.purge() empty every one of them.
CELERY_TASK_QUEUES = [Queue(name) for name in ("timers", "outbound", "email", "default")]
CELERY_TASK_ROUTES = celery_plan.ROUTES
# Every task has a soft time limit (SoftTimeLimitExceeded is raised in it) and a hard one (its
# process is killed and replaced): oversight.celery_plan says which.
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_TASK_ANNOTATIONS = celery_plan.ANNOTATIONS
# Escalation and expiry (approvals.timers): deadlines within the horizon are handed to the
# broker as ETA tasks; the tick (beat) hands over the next ones and sweeps anything overdue.
OVERSIGHT_TIMER_TICK_SECONDS = env_float("OVERSIGHT_TIMER_TICK_SECONDS", 2.0, minimum=0.2)
OVERSIGHT_TIMER_HORIZON_SECONDS = env_int("OVERSIGHT_TIMER_HORIZON_SECONDS", 60, minimum=1)
# An ETA message is held unacknowledged by a worker until its time; held longer than this, Redis
# gives it to another worker as well. Timers never wait that long (see approvals.timers).
BROKER_VISIBILITY_TIMEOUT = env_int("OVERSIGHT_BROKER_VISIBILITY_TIMEOUT", 3600, minimum=2)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    # With Redis down, a web request fails over to the sweeps quickly instead of hanging.
    "socket_connect_timeout": 1,
    # And with Redis stalled (connected, never answering) a publish gives up instead of waiting
    # forever; the worker's BRPOP is not bound by it (kombu's own checks watch that one).
    "socket_timeout": 2,
}
if OVERSIGHT_TIMER_HORIZON_SECONDS * 2 > BROKER_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "OVERSIGHT_TIMER_HORIZON_SECONDS must stay well below the broker's visibility timeout, "
        "or timers held by a worker would be delivered twice."
    )
if OVERSIGHT_TIMER_HORIZON_SECONDS <= 2 * OVERSIGHT_TIMER_TICK_SECONDS:
    raise ImproperlyConfigured(
        "OVERSIGHT_TIMER_HORIZON_SECONDS must exceed two ticks, or deadlines would be handed "
        "over after they are due."
    )
# Publishing a task with the broker down: give up fast, the sweeps catch up.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# Agent controls (SPEC §6). The autonomy level of agents that have none of their own (0-5).
OVERSIGHT_DEFAULT_AUTONOMY_LEVEL = env_int("OVERSIGHT_DEFAULT_AUTONOMY_LEVEL", 2, minimum=0)
if OVERSIGHT_DEFAULT_AUTONOMY_LEVEL > 5:
    raise ImproperlyConfigured("OVERSIGHT_DEFAULT_AUTONOMY_LEVEL: use a level from 0 to 5.")
# The circuit breaker: this many failures or rejections in a row make every check need a
# person; this many pause the agent.
OVERSIGHT_BREAKER_OPEN_AFTER = env_int("OVERSIGHT_BREAKER_OPEN_AFTER", 3, minimum=1)
OVERSIGHT_BREAKER_PAUSE_AFTER = env_int("OVERSIGHT_BREAKER_PAUSE_AFTER", 5, minimum=1)
# Autonomy recommendations: a lowering on a success or override rate needs at least this many
# outcomes (or decided requests) since the level last changed; a critical failure needs one.
OVERSIGHT_AUTONOMY_MIN_EVIDENCE = env_int("OVERSIGHT_AUTONOMY_MIN_EVIDENCE", 10, minimum=1)
# How often beat recomputes the recommendations (and applies lowerings and trial ends).
OVERSIGHT_AUTONOMY_REFRESH_SECONDS = env_float(
    "OVERSIGHT_AUTONOMY_REFRESH_SECONDS", 30.0, minimum=1.0
)

# Monitoring (SPEC §12): how long the page's figures are kept before they are computed again,
# how often beat evaluates the alerts, and the fewest decisions a fairness figure is computed on
# ("not enough data" below it).
OVERSIGHT_MONITORING_CACHE_SECONDS = env_int("OVERSIGHT_MONITORING_CACHE_SECONDS", 60, minimum=0)
OVERSIGHT_MONITORING_EVALUATE_SECONDS = env_float(
    "OVERSIGHT_MONITORING_EVALUATE_SECONDS", 60.0, minimum=1.0
)
OVERSIGHT_FAIRNESS_MIN_SAMPLE = env_int("OVERSIGHT_FAIRNESS_MIN_SAMPLE", 20, minimum=1)
# The bearer token Prometheus sends for /metrics (monitoring.prometheus); empty: no /metrics.
OVERSIGHT_METRICS_TOKEN = env_str("OVERSIGHT_METRICS_TOKEN")

# The transparency log (SPEC §7). A signed checkpoint every this many events, or this often when
# the log grew; beat looks every OVERSIGHT_CHECKPOINT_CHECK_SECONDS.
OVERSIGHT_CHECKPOINT_EVERY_EVENTS = env_int("OVERSIGHT_CHECKPOINT_EVERY_EVENTS", 1000, minimum=1)
OVERSIGHT_CHECKPOINT_EVERY_SECONDS = env_float(
    "OVERSIGHT_CHECKPOINT_EVERY_SECONDS", 300.0, minimum=1.0
)
OVERSIGHT_CHECKPOINT_CHECK_SECONDS = env_float(
    "OVERSIGHT_CHECKPOINT_CHECK_SECONDS", 5.0, minimum=0.2
)
# The log's name in its checkpoints (C2SP tlog-checkpoint origin) and the signing key's name.
OVERSIGHT_CHECKPOINT_ORIGIN = env_str("OVERSIGHT_CHECKPOINT_ORIGIN", "oversight.local/audit")
# A second place the checkpoints are written to (in compose, a volume of its own).
OVERSIGHT_CHECKPOINT_DIR = env_str("OVERSIGHT_CHECKPOINT_DIR", str(VAR_DIR / "checkpoints"))
# The base64 of a 32-byte Ed25519 seed; unset, one is made into the file below (mode 0600) and
# `check --deploy` warns.
OVERSIGHT_AUDIT_SIGNING_KEY = env_str("OVERSIGHT_AUDIT_SIGNING_KEY")
OVERSIGHT_AUDIT_SIGNING_KEY_FILE = env_str(
    "OVERSIGHT_AUDIT_SIGNING_KEY_FILE", str(VAR_DIR / "audit-signing-key")
)
# SIEM streaming of the audit events as they commit (SPEC §7): syslog (RFC 5424) over TCP or TLS,
# `tcp://host:port` or `tls://host:port`, and HTTPS JSON, `https://...`; empty: off.
OVERSIGHT_SIEM_SYSLOG_URL = env_str("OVERSIGHT_SIEM_SYSLOG_URL")
OVERSIGHT_SIEM_HTTPS_URL = env_str("OVERSIGHT_SIEM_HTTPS_URL")
try:
    _siem = urlsplit(OVERSIGHT_SIEM_SYSLOG_URL)
    if OVERSIGHT_SIEM_SYSLOG_URL and not (
        _siem.scheme in ("tcp", "tls") and _siem.hostname and _siem.port
    ):
        raise ValueError  # (.port raises it too, for a port that is not a number)
    _siem = urlsplit(OVERSIGHT_SIEM_HTTPS_URL)
    if OVERSIGHT_SIEM_HTTPS_URL and not (_siem.scheme == "https" and _siem.hostname):
        raise ValueError
except ValueError:
    raise ImproperlyConfigured(
        "OVERSIGHT_SIEM_SYSLOG_URL: use tcp://host:port or tls://host:port; "
        "OVERSIGHT_SIEM_HTTPS_URL: use https://host/path."
    ) from None
# The HTTPS endpoint's Authorization header, e.g. `Splunk <token>`, `ApiKey <key>` (a secret).
OVERSIGHT_SIEM_HTTPS_AUTHORIZATION = env_str("OVERSIGHT_SIEM_HTTPS_AUTHORIZATION")
# A SIEM reached at a non-public address (SPEC §9.11): any (development), or these networks
# (CIDR), e.g. the collector's subnet; every other private address stays refused.
OVERSIGHT_SIEM_ALLOW_PRIVATE = env_bool("OVERSIGHT_SIEM_ALLOW_PRIVATE", default=DEBUG)
OVERSIGHT_SIEM_ALLOW_NETWORKS = env_networks("OVERSIGHT_SIEM_ALLOW_NETWORKS")

# Slack (SPEC §13, docs/slack.md): the bot's token and the app's signing secret; either unset
# turns the integration off (nothing is posted, interactions answer 404). The Web API's address
# is Slack's; tests point it at a local fake.
OVERSIGHT_SLACK_BOT_TOKEN = env_str("OVERSIGHT_SLACK_BOT_TOKEN")
OVERSIGHT_SLACK_SIGNING_SECRET = env_str("OVERSIGHT_SLACK_SIGNING_SECRET")
OVERSIGHT_SLACK_API_URL = env_str("OVERSIGHT_SLACK_API_URL", "https://slack.com/api").rstrip("/")
if not OVERSIGHT_SLACK_API_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("OVERSIGHT_SLACK_API_URL: use https://host/path.")
# A Web API at a non-public address (a test fake, a proxy on the private network); the operator
# chooses this address, not an agent, but the outbound rules hold for it all the same.
OVERSIGHT_SLACK_ALLOW_PRIVATE = env_bool("OVERSIGHT_SLACK_ALLOW_PRIVATE", default=DEBUG)
# Link a Slack user to the Oversight person with the same address when Slack says the address is
# confirmed (users.info); off, people link with the explicit step only.
OVERSIGHT_SLACK_LINK_BY_EMAIL = env_bool("OVERSIGHT_SLACK_LINK_BY_EMAIL", default=True)

CELERY_BEAT_SCHEDULE = celery_plan.beat_schedule(
    tick=OVERSIGHT_TIMER_TICK_SECONDS,
    checkpoint_check=OVERSIGHT_CHECKPOINT_CHECK_SECONDS,
    autonomy_refresh=OVERSIGHT_AUTONOMY_REFRESH_SECONDS,
    monitoring_evaluate=OVERSIGHT_MONITORING_EVALUATE_SECONDS,
    siem=bool(OVERSIGHT_SIEM_SYSLOG_URL or OVERSIGHT_SIEM_HTTPS_URL),
    slack=bool(OVERSIGHT_SLACK_BOT_TOKEN),
)
CELERY_BEAT_SCHEDULE_FILENAME = env_str(
    "OVERSIGHT_BEAT_SCHEDULE_FILE", str(VAR_DIR / "celerybeat-schedule")
)
# Tests run tasks in-process only when they say so; the default is a real broker.
CELERY_TASK_ALWAYS_EAGER = env_bool("OVERSIGHT_CELERY_EAGER", default=False)

# --- People, login and throttling ------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTHENTICATION_BACKENDS = [
    # django-axes first: it refuses locked-out attempts before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling per account across addresses and per address across accounts (SPEC §9.9),
# with django-axes; accounts/throttle.py says why the limits are what they are. Failures count
# for the cool-off; a limit reached locks logins before any password is checked, for the
# cool-off after the failure that reached it. One audit event per lockout.
AXES_HANDLER = "accounts.throttle.LoginThrottle"
# One guesser at one account from one address: the tightest, as it locks out nobody else.
AXES_FAILURE_LIMIT = env_int("OVERSIGHT_LOGIN_FAILURE_LIMIT", 5, minimum=1)
# One address guessing at many accounts (higher: an office may share an address).
OVERSIGHT_LOGIN_ADDRESS_FAILURE_LIMIT = env_int(
    "OVERSIGHT_LOGIN_ADDRESS_FAILURE_LIMIT", 20, minimum=1
)
# One account guessed at from many addresses (higher: it locks its person out; not applied at
# addresses the person logged in from in the last 30 days).
OVERSIGHT_LOGIN_ACCOUNT_FAILURE_LIMIT = env_int(
    "OVERSIGHT_LOGIN_ACCOUNT_FAILURE_LIMIT", 20, minimum=1
)
AXES_COOLOFF_TIME = env_int("OVERSIGHT_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
# The handler counts these itself; axes uses the list for its logs and bookkeeping.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address", "username"]
# Attempts refused while locked never reach a password: they neither count nor prolong the lock.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# How many proxies in front of the web processes append to X-Forwarded-For (compose: 1, Caddy).
# The client is the entry the outermost one appended; 0 ignores the header (anyone can send one).
OVERSIGHT_PROXY_COUNT = env_int("OVERSIGHT_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "accounts.throttle.client_address"

# Calls per agent per minute across all endpoints (0 turns the limit off).
# Long-polls (`?wait=N`) hold no thread (oversight.handlers.threadless); past these many waiting
# at once in one web process, or for one agent in one web process, a waiter is refused (429).
OVERSIGHT_LONG_POLL_MAX_PER_PROCESS = env_int(
    "OVERSIGHT_LONG_POLL_MAX_PER_PROCESS", 1000, minimum=1
)
OVERSIGHT_LONG_POLL_MAX_PER_AGENT = env_int("OVERSIGHT_LONG_POLL_MAX_PER_AGENT", 200, minimum=1)
# Threads for the database work of threadless requests (each call holds a connection briefly).
# Few: each competes with the process's other threads for the interpreter's lock, and a thread
# waiting on its database answer then waits for the lock too. With 2,000 long-polls arriving at
# once, 8 threads made creates meanwhile take 3.2-3.5 s (p99), 2 threads 1.8-2.1 s.
OVERSIGHT_THREADLESS_POOL_SIZE = env_int("OVERSIGHT_THREADLESS_POOL_SIZE", 2, minimum=1)
OVERSIGHT_API_RATE_LIMIT_PER_MINUTE = env_int(
    "OVERSIGHT_API_RATE_LIMIT_PER_MINUTE", 1200, minimum=0
)

# Callbacks go to public addresses only, unless this is on (development, agents on a private
# network): otherwise an agent could make the server probe internal services.
OVERSIGHT_CALLBACK_ALLOW_PRIVATE = env_bool("OVERSIGHT_CALLBACK_ALLOW_PRIVATE", default=DEBUG)
# Narrower: the non-public networks callbacks may reach (agents on an internal subnet), while
# loopback, metadata and every other private address stay refused.
OVERSIGHT_CALLBACK_ALLOW_NETWORKS = env_networks("OVERSIGHT_CALLBACK_ALLOW_NETWORKS")
# Each outbound call (callbacks) ends within this many seconds whatever the peer does, the answer's
# body included, and reads at most this many bytes of it (SPEC §9.6, oversight/outbound.py). An
# attempt must end well within the outbox's 60 s lease (oversight/outbox.py), hence the ceiling.
OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS = env_float(
    "OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS", 10.0, minimum=0.5
)
if OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS > 30:
    raise ImproperlyConfigured(
        f"OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS={OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS:g} must be at "
        "most 30: an attempt must end well within the outbox's 60 s lease."
    )
OVERSIGHT_OUTBOUND_MAX_RESPONSE_BYTES = env_int(
    "OVERSIGHT_OUTBOUND_MAX_RESPONSE_BYTES", 64 * 1024, minimum=0
)
# After an agent's webhook secret is rotated, the replaced one keeps signing its callbacks (next
# to the new one) this long, so the agent can switch without missing a callback.
OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS = env_int(
    "OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS", 24, minimum=0
)

# Approvers may not decide their own agents' requests unless an admin allows it (SPEC §2).
OVERSIGHT_ALLOW_SELF_APPROVAL = env_bool("OVERSIGHT_ALLOW_SELF_APPROVAL", default=False)

# Guardrails (SPEC §6). An action no policy covers is refused; `require_approval` lets a person
# decide it instead, at high risk.
OVERSIGHT_UNKNOWN_ACTIONS = env_str("OVERSIGHT_UNKNOWN_ACTIONS", "deny")
if OVERSIGHT_UNKNOWN_ACTIONS not in ("deny", "require_approval"):
    raise ImproperlyConfigured(
        f"OVERSIGHT_UNKNOWN_ACTIONS={OVERSIGHT_UNKNOWN_ACTIONS!r}: use deny or require_approval."
    )
# Checks (with their arguments, up to 4 KB) are kept 8 days for `policies import --dry-run` to
# replay; off, nothing of an allowed check is kept anywhere.
OVERSIGHT_CHECK_LOG = env_bool("OVERSIGHT_CHECK_LOG", default=True)
# Each process compares its copies of the API keys (agents.keyring) with the database at least
# this often, besides comparing them with the version in Redis on every check: the bound on a
# change that Redis was not told of (a writer cut off from it, Redis back from an old snapshot).
OVERSIGHT_KEYRING_RECHECK_SECONDS = env_float("OVERSIGHT_KEYRING_RECHECK_SECONDS", 1.0, minimum=0)
# This many violations by one agent within an hour alert the managers (once per hour).
OVERSIGHT_VIOLATION_ALERT_THRESHOLD = env_int("OVERSIGHT_VIOLATION_ALERT_THRESHOLD", 3, minimum=1)

# --- Security --------------------------------------------------------------------------------

HTTPS = env_bool("OVERSIGHT_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
# Load balancers, compose health checks and Prometheus reach it over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("OVERSIGHT_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("OVERSIGHT_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("OVERSIGHT_HSTS_PRELOAD", default=True)
if env_bool("OVERSIGHT_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("OVERSIGHT_SESSION_HOURS", 12, minimum=1) * 3600
# An open WebSocket re-checks its session (still there, not expired, same password, person
# active and in role) this often while idle, and before everything it sends (SPEC §9.8). Each
# check is three primary-key reads per socket.
OVERSIGHT_LIVE_RECHECK_SECONDS = env_float("OVERSIGHT_LIVE_RECHECK_SECONDS", 30.0, minimum=0.1)
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# No inline scripts or styles anywhere (SPEC §9): every script and stylesheet is a file under
# static/. The nonce is there for the few third-party pages (API docs) that need one.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("OVERSIGHT_MAX_BODY_BYTES", 256 * 1024, minimum=1024)

# --- Static files ---------------------------------------------------------------------------

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("OVERSIGHT_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# In development WhiteNoise serves straight from the source folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Agent API ------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["agents.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["agents.permissions.IsActiveAgent"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["oversight.parsers.StrictJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["oversight.throttling.AgentRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "oversight.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Oversight agent API",
    "DESCRIPTION": (
        "Ask a human before doing something risky, wait for the decision, report LLM spend. "
        "Authenticate with `Authorization: Bearer ovs_<prefix>_<secret>`. Errors are "
        '`{"error": {"code": "...", "message": "..."}}` with a stable `code`.'
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RiskLevelEnum": "approvals.models.RiskLevel",
        # A reason's effect and what unknown actions get: the same two outcomes of a check.
        "GuardrailEffectEnum": ["deny", "require_approval"],
        # A check's decision, and a reason's effect (allow: a standing approval's).
        "CheckDecisionEnum": ["allow", "deny", "require_approval"],
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "approvals.api.document_async_endpoints",
        "oversight.api.document_health",
        "oversight.api.document_unavailable",
    ],
}

# --- Email ----------------------------------------------------------------------------------

# Django 6.1 configures outgoing mail as MAILERS; the environment keeps the familiar names.
EMAIL_BACKEND_PATH = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
_SMTP_OPTIONS = {
    "host": env_str("EMAIL_HOST", "localhost"),
    "port": env_int("EMAIL_PORT", 25, minimum=1),
    "username": env_str("EMAIL_HOST_USER"),
    "password": env_str("EMAIL_HOST_PASSWORD"),
    "use_tls": env_bool("EMAIL_USE_TLS", default=False),
    "use_ssl": env_bool("EMAIL_USE_SSL", default=False),
    "timeout": env_int("EMAIL_TIMEOUT", 10, minimum=1),
}
MAILERS = {
    "default": {
        "BACKEND": EMAIL_BACKEND_PATH,
        "OPTIONS": _SMTP_OPTIONS if EMAIL_BACKEND_PATH.endswith("smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Oversight <oversight@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
OVERSIGHT_BASE_URL = env_str("OVERSIGHT_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- Internationalisation -------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("OVERSIGHT_TIME_ZONE", "UTC")
# Budget periods (hourly, daily, weekly, monthly) start on this zone's wall clock (SPEC §5);
# by default the display zone's.
OVERSIGHT_BUDGET_TIME_ZONE = env_str("OVERSIGHT_BUDGET_TIME_ZONE", TIME_ZONE)
try:
    ZoneInfo(OVERSIGHT_BUDGET_TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"OVERSIGHT_BUDGET_TIME_ZONE={OVERSIGHT_BUDGET_TIME_ZONE!r} is not a time zone name "
        "(e.g. UTC, Europe/Berlin)."
    ) from None
USE_I18N = True
USE_TZ = True

# Logs (SPEC §12): `json` writes one object per line with the request id, agent, person and
# audit sequence (oversight.logs); `text` the familiar one-liners.
OVERSIGHT_LOG_FORMAT = env_str("OVERSIGHT_LOG_FORMAT", "text")
if OVERSIGHT_LOG_FORMAT not in logs.FORMATS:
    raise ImproperlyConfigured(f"OVERSIGHT_LOG_FORMAT={OVERSIGHT_LOG_FORMAT!r}: use text or json.")
LOGGING = logs.config(format=OVERSIGHT_LOG_FORMAT, level=env_str("OVERSIGHT_LOG_LEVEL", "INFO"))
