# DocuMind: one image for every Django process (web on daphne, Celery worker and beat, migrate).
# Production settings; runs as an unprivileged user. Build: docker build -t documind .
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements/ /tmp/requirements/
RUN /opt/venv/bin/pip install -r /tmp/requirements/production.txt \
    && /opt/venv/bin/pip install --no-deps -r /tmp/requirements/ocr.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    DOCUMIND_VAR_DIR=/app/var \
    MEDIA_ROOT=/app/var/media \
    STATIC_ROOT=/app/static
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin documind
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . .
# collectstatic only reads settings: DJANGO_BUILD_STEP is the production settings' explicit switch for
# it (a throw-away random key for this one command, no database); the server refuses to run with it.
RUN DJANGO_BUILD_STEP=collectstatic REDIS_URL=redis://localhost:6379/0 \
        python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /app/var/media \
    && chown -R documind:documind /app/var
USER documind
EXPOSE 8000
# config.serve: daphne with request bodies bounded before they are read and an access log that redacts
# credentials in query strings (?token=). No --proxy-headers: TRUSTED_PROXIES decides (config/client_ip.py).
CMD ["python", "-m", "config.serve", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]
