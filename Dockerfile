# Tuneboard in a container, for a GPU box (default) or a machine without one:
#   docker build -t tuneboard .                                  # CUDA runtime + the CUDA build of torch
#   docker build -t tuneboard:cpu --build-arg FLAVOR=cpu .       # python:3.11-slim + the CPU build of torch
#   docker run --gpus all -p 7860:7860 -v tuneboard:/data --stop-timeout 120 \
#     -e TUNEBOARD_AUTH='alice:secret' -e HF_TOKEN tuneboard
# The install step is scripts/install.sh, the one `make setup` runs (so CI runs it too). The app binds 0.0.0.0
# here and refuses to start without a login unless TUNEBOARD_PRIVATE_NETWORK=1 says the port is private.
ARG FLAVOR=gpu

# The GPU image: CUDA's runtime libraries; Python 3.11 is the version the suite runs on.
FROM nvidia/cuda:12.8.1-runtime-ubuntu22.04 AS base-gpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv make tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PY=python3.11

FROM python:3.11.7-slim-bookworm AS base-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends make tini \
 && rm -rf /var/lib/apt/lists/*
ENV PY=python3 TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# hadolint ignore=DL3006
FROM base-${FLAVOR} AS app
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin tuneboard \
 && mkdir -p /app /data && chown tuneboard:tuneboard /app /data
WORKDIR /app
USER 1000:1000
COPY --chown=tuneboard:tuneboard requirements.txt requirements-dev.txt ./
COPY --chown=tuneboard:tuneboard scripts/install.sh scripts/
RUN scripts/install.sh
COPY --chown=tuneboard:tuneboard . .
# One volume for everything that must outlive the container: uploads and runs, the Hugging Face cache (and
# its token, if you log in inside), Gradio's temporary files (inside TUNEBOARD_HOME) and the tiny models.
ENV TUNEBOARD_HOME=/data TUNEBOARD_CACHE=/data/cache HF_HOME=/data/huggingface \
    TUNEBOARD_CONTAINER=1 GRADIO_ANALYTICS_ENABLED=False PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD [".venv/bin/python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:7860/healthz', timeout=4)"]
# docker stop sends SIGTERM: runs stop with a checkpoint; give them time (docker run --stop-timeout 120).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD [".venv/bin/python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
