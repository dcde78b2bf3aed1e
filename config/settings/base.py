"""Settings shared by every environment. local/test/production only differ from these.

Everything is read from the environment through one ``environ.Env`` (see ``.env.example``).
Without ``DATABASE_URL`` the embedded PostgreSQL is started; without ``REDIS_URL`` the broker,
channel layer and cache fall back to ones that need no server (the "embedded default").
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.embedded_db import embedded_database_settings
from config.metrics_processes import use_host_and_pid

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"), overwrite=False)
VAR_DIR = Path(env.str("DOCUMIND_VAR_DIR", default=str(BASE_DIR / "var")))

APP_NAME = "DocuMind"
APP_VERSION = "0.1.0"
API_PREFIX = "/api/v1"

# No default: local settings make one per install under var/ (config.keys), test settings one per session,
# and production refuses to start without a strong one.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])

INSTALLED_APPS = [
    "daphne",
    "servestatic",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "channels",
    "channels_postgres",
    "django_structlog",
    "axes",
    "csp",
    "django_prometheus",
    "config.apps.ProjectConfig",
    "health",
    "tenants",
    "accounts",
    "tasks",
    "documents",
    "chat",
    "integrations",
    "audit",
    "console",
]

# The first three are async-capable, so under daphne static files are served without a thread hop
# (and still get the request id and the security headers).
MIDDLEWARE = [
    "config.middleware.ClientIPMiddleware",
    "config.middleware.RequestIDMiddleware",
    "config.middleware.SecurityHeadersMiddleware",
    "config.middleware.StaticFilesMiddleware",  # ServeStatic; a missing file is the JSON 404
    # Below ServeStatic the chain runs in sync mode on the request's thread, entered with one hop
    # (config.asgi_handler); the view and rendering too. Static files are uncounted.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "config.middleware.RequestLogMiddleware",  # django-structlog's request events
    # After ServeStatic (scripts and styles need no policy of their own, and stay on the event loop).
    "csp.middleware.CSPMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",  # above the sync-only TenantMiddleware
    "tenants.middleware.TenantMiddleware",
    "audit.context.AuditContextMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes wants: the admin login's lockout answer
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database --------------------------------------------------------------------------------
EMBEDDED_PGDATA = Path(env.str("EMBEDDED_PGDATA", default=str(VAR_DIR / "pgdata")))
if env.str("DATABASE_URL", default=""):
    DATABASES = {"default": env.db_url("DATABASE_URL")}
    # postgresql://user@/name?host=/socket/dir is libpq's spelling of a unix socket: make it the HOST,
    # which the PostgreSQL channel layer below copies (it does not read OPTIONS).
    if not DATABASES["default"].get("HOST") and "host" in DATABASES["default"].get("OPTIONS", {}):
        DATABASES["default"]["HOST"] = DATABASES["default"]["OPTIONS"].pop("host")
    EMBEDDED_DATABASE = False
else:
    DATABASES = {
        "default": embedded_database_settings(
            EMBEDDED_PGDATA,
            name=env.str("EMBEDDED_DB_NAME", default="documind"),
            cleanup=env.str("EMBEDDED_PG_CLEANUP", default="stop") or None,
        )
    }
    EMBEDDED_DATABASE = True
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # django-prometheus's backend (queries, their durations and errors for /metrics), whose pool checks a
    # connection with a round trip only when it may have gone bad (config/db_backend).
    DATABASES["default"]["ENGINE"] = "config.db_backend"
# A psycopg connection pool per process (Django 5.1+). Under ASGI each request's sync code runs in a
# thread of its own (asgiref's ThreadSensitiveContext), and connections are per thread: without a
# pool every request would open (and close) a new PostgreSQL connection. 0 turns the pool off.
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=10)
if DB_POOL_MAX_SIZE > 0:
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps connections; Django must not as well
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# axes first: a locked-out admin login is refused before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "accounts.backends.EmailTenantBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
# ServeStatic (WhiteNoise's ASGI-capable fork) serves /static/ from daphne itself: straight from the
# apps' folders by default, from STATIC_ROOT after `collectstatic` in production (see the Dockerfile).
SERVESTATIC_USE_FINDERS = env.bool("SERVESTATIC_USE_FINDERS", default=True)
SERVESTATIC_AUTOREFRESH = False
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Redis or the embedded stand-ins ---------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "config.cache.MeteredRedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, which cuts off the layer's blocking
            # BZPOPMIN (also 5 s) and tears down every socket that has been idle that long: allow more.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "capacity": 1000, "expiry": 60},
        }
    }
else:
    # DatabaseCache with atomic incr/decr (attempt limits and rate-limit counters), see config/cache.py.
    CACHES = {"default": {"BACKEND": "config.cache.AtomicDatabaseCache", "LOCATION": "documind_cache"}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "config.channel_layers.PostgresChannelLayer",  # channels_postgres, see there
            "CONFIG": {
                **{
                    k: v
                    for k, v in DATABASES["default"].items()
                    if k in {"ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT"}
                },
                "TIME_ZONE": None,
                # libpq options of DATABASE_URL too (e.g. a unix-socket ``?host=/path``, which
                # django-environ puts in OPTIONS rather than HOST).
                "OPTIONS": {k: v for k, v in DATABASES["default"].get("OPTIONS", {}).items() if k != "pool"},
                "CONN_MAX_AGE": 0,
                "CONN_HEALTH_CHECKS": False,
                "AUTOCOMMIT": True,
                "PSYCOPG_OPTIONS": {"min_size": 1, "max_size": 4},
            },
        }
    }

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_DIR = Path(env.str("CELERY_BROKER_DIR", default=str(VAR_DIR / "broker")))
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (CELERY_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_RESULT_BACKEND = None
# The queue tasks go to and workers consume: give each deployment (or test session) sharing one Redis its own.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = env.str("CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule"))
CELERY_BEAT_SCHEDULE = {
    "tasks-watchdog": {"task": "tasks.watchdog", "schedule": 60.0},
    "audit-purge": {"task": "audit.purge", "schedule": 24 * 3600.0},
    "revoked-token-families-purge": {"task": "accounts.purge_revoked_families", "schedule": 24 * 3600.0},
    "expired-refresh-tokens-purge": {"task": "accounts.purge_expired_refresh_tokens", "schedule": 24 * 3600.0},
}
TASK_STALL_TIMEOUT_SECONDS = env.int("TASK_STALL_TIMEOUT_SECONDS", default=15 * 60)

# --- REST framework, JWT, OpenAPI ------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TenantJWTAuthentication",
        "integrations.authentication.APIKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.DefaultPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["config.throttling.RateLimitThrottle"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "DocuMind API",
    "DESCRIPTION": "Multi-tenant chat with your PDFs: upload, ingest, search and ask, with citations.",
    "VERSION": APP_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    # Public: a bearer sent to them is ignored (a signed-in client without X-Tenant-ID would get a 401).
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The bearer scheme comes from config.openapi.TenantJWTScheme, on the operations that authenticate.
    "PREPROCESSING_HOOKS": [],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.add_error_envelope_and_tenant_header",
        "config.openapi.markdown_descriptions",
    ],
    # Several models have a "status"/"role" with different choices: name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "UserRoleEnum": "accounts.models.User.Role",
        "MessageRoleEnum": "chat.models.Message.Role",
        "MessageStatusEnum": "chat.models.Message.Status",
        "TaskStatusEnum": "tasks.models.Task.Status",
        "DocumentStatusEnum": "documents.models.Document.Status",
        "TextSourceEnum": "documents.models.Chunk.Source",
    },
}

# --- CORS, security headers ------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "origin",
    "x-request-id",
    "x-tenant-id",
)
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After"]
# Browser pages allowed to open the chat socket besides the server's own (see config/websocket_origin.py);
# clients that send no Origin (scripts) are always let through to the token check.
WEBSOCKET_ALLOWED_ORIGINS = env.list("WEBSOCKET_ALLOWED_ORIGINS", default=CORS_ALLOWED_ORIGINS)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
PERMISSIONS_POLICY = "geolocation=(), microphone=(), camera=()"
# Content-Security-Policy on every response (django-csp): scripts only from this origin and never
# inline, nothing from other hosts, no framing. Pages that need more add to it per view
# (csp.decorators.csp_update) or here; styles allow inline attributes for Swagger UI and ReDoc.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Rate limits -----------------------------------------------------------------------------
RATELIMIT_ENABLED = env.bool("RATELIMIT_ENABLED", default=True)
RATELIMIT_PER_MINUTE = env.int("RATELIMIT_PER_MINUTE", default=60)
RATELIMIT_AUTH_PER_MINUTE = env.int("RATELIMIT_AUTH_PER_MINUTE", default=10)
# Where the general limit (RATELIMIT_PER_MINUTE, API keys' own) counts: "shared" (the cache every process
# shares) or "process" (this process's memory: no cache write per request; for one web process only).
# Sign-in limits and the unknown-tenant counter always use the shared cache (config.throttling).
RATELIMIT_API_COUNTER = env.str("RATELIMIT_API_COUNTER", default="shared")
if RATELIMIT_API_COUNTER not in ("shared", "process"):
    raise ImproperlyConfigured(f"RATELIMIT_API_COUNTER must be 'shared' or 'process', not {RATELIMIT_API_COUNTER!r}")
# Unknown, inactive or malformed X-Tenant-IDs per client IP and minute before that IP gets 429 (tenants.middleware).
RATELIMIT_TENANT_MISSES_PER_MINUTE = env.int("RATELIMIT_TENANT_MISSES_PER_MINUTE", default=20)
RATELIMIT_USE_CACHE = "default"
# Seconds an active tenant named by X-Tenant-ID is remembered per process (tenants.lookup; 0: looked up
# on every request). A change in this process is seen at once, in others within this time; a deactivated
# tenant's tokens and API keys are refused at once anyway (they load the tenant fresh).
TENANT_CACHE_SECONDS = env.int("TENANT_CACHE_SECONDS", default=5)
RATELIMIT_VIEW = "config.errors.ratelimited_view"
# The client address comes from REMOTE_ADDR, which config.middleware.ClientIPMiddleware takes from
# X-Forwarded-For only when the peer is one of these proxies (addresses or networks).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

# --- The Django admin's login: django-axes, per IP and per account, in the shared cache ---------
AXES_ONLY_ADMIN_SITE = True  # the API's sign-in keeps its JSON answers and its own limits
AXES_HANDLER = "accounts.axes.AdminLoginCacheHandler"
AXES_CACHE = "default"
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either one over the limit locks
AXES_CLIENT_IP_CALLABLE = "accounts.axes.client_ip"
AXES_USERNAME_FORM_FIELD = "username"  # the admin login form's field (USERNAME_FIELD is "email")
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False  # no banner at start-up; lockouts are still logged (WARNING "AXES: Locking out ...")

# --- Email -----------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="DocuMind <no-reply@documind.local>")

# --- Web console -----------------------------------------------------------------------------
# Where people open the console: the links of invitation and sign-in e-mails start with it.
CONSOLE_URL = env.str("CONSOLE_URL", default="http://127.0.0.1:8000").rstrip("/")
# The console's refresh token lives in this HttpOnly, SameSite=Strict cookie (path /console/).
CONSOLE_REFRESH_COOKIE = env.str("CONSOLE_REFRESH_COOKIE", default="documind_refresh")
CONSOLE_COOKIE_SECURE = env.bool("CONSOLE_COOKIE_SECURE", default=False)  # production: true
# Signed download links of documents (citations open them in a new tab) work this long.
DOCUMENT_LINK_SECONDS = env.int("DOCUMENT_LINK_SECONDS", default=600)

# --- Sign-in codes ---------------------------------------------------------------------------
AUTH_CODE_TTL_SECONDS = env.int("AUTH_CODE_TTL_SECONDS", default=600)
AUTH_CODE_MAX_ATTEMPTS = env.int("AUTH_CODE_MAX_ATTEMPTS", default=5)
# Per e-mail address (on top of RATELIMIT_AUTH_PER_MINUTE per client IP), django-ratelimit rates.
AUTH_CODE_EMAIL_RATE = env.str("AUTH_CODE_EMAIL_RATE", default="5/10m")  # codes e-mailed (sign-in, reset)
AUTH_LOGIN_EMAIL_RATE = env.str("AUTH_LOGIN_EMAIL_RATE", default="10/10m")  # password and code attempts
# Codes are e-mailed on a background thread, so the answer takes as long for unknown addresses.
AUTH_EMAIL_IN_BACKGROUND = env.bool("AUTH_EMAIL_IN_BACKGROUND", default=True)

# --- Documents -------------------------------------------------------------------------------
MAX_UPLOAD_MB = env.int("MAX_UPLOAD_MB", default=25)
MAX_PDF_PAGES = env.int("MAX_PDF_PAGES", default=500)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Request bodies are bounded by the server before they are read (config.serve, config.bodylimits):
# (method regex, path regex, bytes or None for MAX_UPLOAD_MB plus the form); anything else gets
# DATA_UPLOAD_MAX_MEMORY_SIZE. Append routes that take large bodies.
REQUEST_BODY_LIMITS: list[tuple[str, str, int | None]] = [
    ("POST", r"/api/v1/documents/?", None),
]
CHUNK_TOKENS = env.int("CHUNK_TOKENS", default=400)
CHUNK_OVERLAP = env.int("CHUNK_OVERLAP", default=40)
PDF_EXTRACTOR = env.str("PDF_EXTRACTOR", default="pypdfium2")
SEARCH_EF_SEARCH = env.int("SEARCH_EF_SEARCH", default=200)
# Hybrid search: the semantic list's weight in the rank fusion (the keyword list's is 1); chosen on the
# development half of the labelled evaluation (benchmarks/retrieval.py).
SEARCH_SEMANTIC_WEIGHT = env.float("SEARCH_SEMANTIC_WEIGHT", default=1.5)
# Exact search below this many candidate chunks: ~7 ms per 2,000 (benchmarks/search.py).
SEARCH_EXACT_MAX_CHUNKS = env.int("SEARCH_EXACT_MAX_CHUNKS", default=2000)
PDF_PAGE_TIMEOUT_SECONDS = env.float("PDF_PAGE_TIMEOUT_SECONDS", default=10.0)  # a page over it: pdf_too_complex
PDF_MAX_PAGE_CHARS = env.int("PDF_MAX_PAGE_CHARS", default=100_000)  # text beyond it on one page is dropped
# The extraction child (documents.sandbox): address space, CPU seconds and wall-clock seconds per document.
EXTRACT_MAX_MEMORY_MB = env.int("EXTRACT_MAX_MEMORY_MB", default=512)
EXTRACT_CPU_SECONDS = env.int("EXTRACT_CPU_SECONDS", default=300)
EXTRACT_TIMEOUT_SECONDS = env.float("EXTRACT_TIMEOUT_SECONDS", default=300.0)
# OCR of pages without a text layer (documents.ocr says which engine reads which languages).
OCR_ENABLED = env.bool("OCR_ENABLED", default=True)
OCR_ENGINE = env.str("OCR_ENGINE", default="rapidocr")  # rapidocr | tesseract
OCR_LANGUAGES = env.str("OCR_LANGUAGES", default="eng")  # tesseract's codes joined by "+": eng+deu, fas, ara
OCR_MAX_PAGES = env.int("OCR_MAX_PAGES", default=100)  # more pages needing OCR: pdf_too_many_scanned_pages
OCR_MIN_CONFIDENCE = env.float("OCR_MIN_CONFIDENCE", default=0.6)  # recognised lines below it are dropped
OCR_MAX_MEMORY_MB = env.int("OCR_MAX_MEMORY_MB", default=2048)  # onnxruntime needs ~1.5 GB of address space
OCR_PAGE_TIMEOUT_SECONDS = env.float("OCR_PAGE_TIMEOUT_SECONDS", default=60.0)
OCR_TIMEOUT_SECONDS = env.float("OCR_TIMEOUT_SECONDS", default=1200.0)
OCR_DPI = env.int("OCR_DPI", default=200)
OCR_THREADS = env.int("OCR_THREADS", default=1)
EMBEDDING_BATCH_SIZE = env.int("EMBEDDING_BATCH_SIZE", default=512)  # inputs per request (the API allows 2048)
EMBEDDING_BATCH_TOKENS = env.int("EMBEDDING_BATCH_TOKENS", default=250_000)  # tokens per request (the API allows 300k)
INGESTION_MAX_ATTEMPTS = env.int("INGESTION_MAX_ATTEMPTS", default=3)  # redeliveries of a crashing document

# --- AI providers ----------------------------------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
OPENAI_TIMEOUT_SECONDS = env.float("OPENAI_TIMEOUT_SECONDS", default=60.0)
OPENAI_MAX_RETRIES = env.int("OPENAI_MAX_RETRIES", default=3)
# The default embedder of new tenants (each tenant keeps its own; see `manage.py reembed`).
EMBEDDING_PROVIDER = env.str(
    "EMBEDDING_PROVIDER", default="auto"
)  # auto (openai with a key, else local) | local | openai | hashing
LOCAL_EMBEDDER_THREADS = env.int("LOCAL_EMBEDDER_THREADS", default=2)  # onnxruntime threads per process
LOCAL_EMBEDDER_BATCH = env.int("LOCAL_EMBEDDER_BATCH", default=4)  # 256-word-piece windows per model run
REEMBED_BATCH = env.int("REEMBED_BATCH", default=32)  # chunks per batch (a progress report each) when re-embedding
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="text-embedding-3-small")
EMBEDDING_DIMENSIONS = env.int("EMBEDDING_DIMENSIONS", default=1536)
CHAT_PROVIDER = env.str("CHAT_PROVIDER", default="auto")  # auto | openai | extractive
CHAT_MODEL = env.str("CHAT_MODEL", default="gpt-4o-mini")
CHAT_ALLOWED_MODELS = env.list("CHAT_ALLOWED_MODELS", default=["gpt-4o-mini", "gpt-4o"])
CHAT_CONTEXT_TOKENS = env.int("CHAT_CONTEXT_TOKENS", default=12000)
CHAT_MAX_ANSWER_TOKENS = env.int("CHAT_MAX_ANSWER_TOKENS", default=1024)
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=4000)
CHAT_SOCKET_MESSAGES_PER_MINUTE = env.int("CHAT_SOCKET_MESSAGES_PER_MINUTE", default=20)
CHAT_SOCKET_AUTH_SECONDS = env.float("CHAT_SOCKET_AUTH_SECONDS", default=10.0)  # first-frame auth deadline
CHAT_TOP_K = env.int("CHAT_TOP_K", default=8)  # chunks retrieved per question
CHAT_SAVE_INTERVAL_MS = env.int("CHAT_SAVE_INTERVAL_MS", default=250)  # a streaming answer is saved this often
CHAT_STALE_STREAM_SECONDS = env.int("CHAT_STALE_STREAM_SECONDS", default=120)  # unsaved this long: interrupted
CHAT_DB_THREADS = env.int("CHAT_DB_THREADS", default=2)  # the chat sockets' database threads (see chat.db)
TIKTOKEN_CACHE_DIR = env.str("TIKTOKEN_CACHE_DIR", default=str(VAR_DIR / "tiktoken"))

# --- Webhooks --------------------------------------------------------------------------------
# Hosts (exact names or literal addresses) a webhook may reach although they resolve to private,
# loopback or link-local addresses: an operator's decision (say, a receiver inside the VPN).
WEBHOOK_ALLOWED_HOSTS = env.list("WEBHOOK_ALLOWED_HOSTS", default=[])
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)  # read/write timeout per attempt
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=3.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)  # per delivery, then it is failed
WEBHOOK_RETRY_BACKOFF_SECONDS = env.float("WEBHOOK_RETRY_BACKOFF_SECONDS", default=30.0)  # doubles per retry
WEBHOOK_RETRY_BACKOFF_MAX_SECONDS = env.float("WEBHOOK_RETRY_BACKOFF_MAX_SECONDS", default=3600.0)
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=5)  # failed deliveries in a row
WEBHOOK_CA_BUNDLE = env.str("WEBHOOK_CA_BUNDLE", default="")  # CA file for HTTPS receivers (default: the system's)
# Keys that encrypt endpoint secrets at rest (integrations.encryption): the first encrypts, all decrypt.
WEBHOOK_SECRET_KEYS = env.list("WEBHOOK_SECRET_KEYS", default=[]) or [SECRET_KEY]

# --- Audit log -------------------------------------------------------------------------------
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)  # 0 keeps rows forever

# --- Quotas ----------------------------------------------------------------------------------
DEFAULT_TENANT_DAILY_TOKEN_QUOTA = env.int("DEFAULT_TENANT_DAILY_TOKEN_QUOTA", default=2_000_000)
DEFAULT_USER_DAILY_TOKEN_QUOTA = env.int("DEFAULT_USER_DAILY_TOKEN_QUOTA", default=200_000)

# --- Metrics ---------------------------------------------------------------------------------
# GET /metrics (Prometheus): with a token, only "Authorization: Bearer <token>"; without, loopback only.
# PROMETHEUS_MULTIPROC_DIR (read by prometheus-client itself) adds up every process's samples.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
use_host_and_pid()  # multiprocess sample files named <host>-<pid> (containers share the folder)

# --- Logging ---------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
DJANGO_STRUCTLOG_CELERY_ENABLED = True
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True  # config.middleware.RequestIDMiddleware validated it
DJANGO_STRUCTLOG_USER_ID_FIELD = "pk"
# Each request logs request_started as it arrives and request_finished (or request_failed) as it ends,
# the latter with method, path, status, duration, ids, tenant, user and user agent. LOG_REQUEST_STARTED=false
# keeps one line per request (request_started and SSE's streaming_started go to DEBUG; ~0.07 ms a request).
LOG_REQUEST_STARTED = env.bool("LOG_REQUEST_STARTED", default=True)
DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.INFO if LOG_REQUEST_STARTED else logging.DEBUG

from config.logging import build_logging  # noqa: E402

LOGGING = build_logging(LOG_FORMAT, LOG_LEVEL)

SILENCED_SYSTEM_CHECKS = ["auth.W004"]  # e-mail is unique per tenant, not globally (see accounts.backends)
CSRF_FAILURE_VIEW = "config.errors.csrf_failure"
APPEND_SLASH = False
