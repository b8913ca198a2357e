# syntax=docker/dockerfile:1
# incident-bot: `docker build -t incident-bot .`, then
#   docker run --read-only --tmpfs /tmp -v incident-bot:/var/lib/incident-bot \
#       -p 8080:8080 -e REDIS_URL=redis://redis:6379/0 incident-bot
# Without REDIS_URL the bot starts an embedded Valkey under INCIDENT_BOT_DATA_DIR
# (a volume); production sets REDIS_URL.
#
# The image installs exactly the lock the tests ran on: requirements/build.txt (pip and the
# build backend) and requirements/runtime.txt, both with hashes (`make lock` writes them);
# the project itself goes in with --no-deps. tests/test_dockerfile.py lints this file with
# hadolint and fails on any install that is not from the lock.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# /opt/build holds the locked pip and setuptools; /opt/venv, what the image runs, gets the
# runtime lock from that pip (`--python`) and so carries no pip or build backend itself.
COPY requirements/build.txt requirements/runtime.txt requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes -r requirements/build.txt \
    && python -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes \
        -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY tools ./tools
COPY policies ./policies
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps /tmp/dist/*.whl \
    && /opt/venv/bin/python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
# The root filesystem can be read-only (`--read-only`, readOnlyRootFilesystem): the bot
# writes only its data volume (the embedded Valkey's AOF, config and log) and /tmp (a
# tmpfs or emptyDir), where HOME, TMPDIR, matplotlib's config and font cache and any XDG
# cache point. Bytecode is compiled at build time and never written at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
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
