# syntax=docker/dockerfile:1
# Two targets: `app` (gunicorn + Flask) and `edge` (Debian's nginx with the Lua module, the same
# packages the tests run, so the tested config is the shipped config).

FROM python:3.11-slim-bookworm AS app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
ARG UID=10001
ARG GID=10001
RUN groupadd --gid "${GID}" app \
    && useradd --uid "${UID}" --gid app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY requirements.txt .
# Only the runtime block of requirements.txt: the test tools stay out of the image.
RUN sed '/^# Tests/,$d' requirements.txt > /tmp/runtime.txt \
    && pip install -r /tmp/runtime.txt && rm /tmp/runtime.txt
COPY svc/ svc/
COPY sql/ sql/
COPY migrations/ migrations/
COPY conf/gunicorn.conf.py conf/
# The Redis-side script of the cache, shared with the edge (svc/invalidation.py GENERATIONS).
COPY conf/nginx/generations.lua conf/nginx/
USER app
ENV GUNICORN_BIND=0.0.0.0:8000
EXPOSE 8000
CMD ["gunicorn", "-c", "conf/gunicorn.conf.py", "svc.wsgi:app"]

FROM debian:bookworm-slim AS edge
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx libnginx-mod-http-lua gettext-base curl \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/tasks-edge \
    && ln -sf /dev/stdout /var/lib/tasks-edge/access.log \
    && ln -sf /dev/stderr /var/lib/tasks-edge/error.log \
    && chown www-data:www-data /var/lib/tasks-edge
COPY conf/nginx/ /etc/tasks-edge/
ENV LISTEN=8080 METRICS_LISTEN=9145 APP_SERVERS="server app:8000 max_fails=1 fail_timeout=2s;" REDIS_HOST=redis REDIS_PORT=6379 \
    RESOLVER=127.0.0.11 STATE_DIR=/var/lib/tasks-edge CONF_DIR=/etc/tasks-edge \
    CORS_ORIGINS=""
USER www-data
EXPOSE 8080
# The internal metrics listener: for Prometheus on the backend network, never to publish.
EXPOSE 9145
# Fill in only our ${UPPER_CASE} variables: nginx's own $variables must survive envsubst.
CMD ["sh", "-c", "envsubst '${LISTEN} ${METRICS_LISTEN} ${APP_SERVERS} ${REDIS_HOST} ${REDIS_PORT} ${RESOLVER} ${STATE_DIR} ${CONF_DIR} ${CORS_ORIGINS}' < /etc/tasks-edge/nginx.conf > \"$STATE_DIR/nginx.conf\" && exec nginx -p \"$STATE_DIR\" -c \"$STATE_DIR/nginx.conf\" -g 'daemon off;'"]
