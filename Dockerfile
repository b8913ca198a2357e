# syntax=docker/dockerfile:1
# incident-bot: `docker build -t incident-bot .`, then
#   docker run -p 8080:8080 -e REDIS_URL=redis://redis:6379/0 incident-bot
# Without REDIS_URL the bot starts an embedded Valkey under INCIDENT_BOT_DATA_DIR
# (a volume); production sets REDIS_URL.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY tools ./tools
COPY policies ./policies
RUN pip install --upgrade pip && pip install . && python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    INCIDENT_BOT_DATA_DIR=/var/lib/incident-bot
RUN groupadd --system --gid 10001 incident-bot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin incident-bot \
    && mkdir -p /var/lib/incident-bot \
    && chown 10001:10001 /var/lib/incident-bot
COPY --from=builder /opt/venv /opt/venv
# The embedded Valkey's data, used only when REDIS_URL is unset.
VOLUME ["/var/lib/incident-bot"]
WORKDIR /var/lib/incident-bot
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["incident-bot"]
CMD ["serve"]
