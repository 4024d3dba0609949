# Tuneboard in a container: the same install step as `make run` / `make test` (Makefile target `setup`).
#   docker build -t tuneboard . && docker run -p 7860:7860 -v tuneboard-home:/data tuneboard
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt requirements-dev.txt Makefile ./
RUN make setup
COPY . .
ENV TUNEBOARD_HOME=/data TUNEBOARD_CACHE=/data/cache GRADIO_ANALYTICS_ENABLED=False
EXPOSE 7860
# Inside a container 0.0.0.0 is how the published port is reached; set TUNEBOARD_AUTH for a login.
CMD [".venv/bin/python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
