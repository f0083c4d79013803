# tashooks daemon: receiver and worker (`tashooks serve`), or either one alone.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY receiver ./receiver
COPY handlers ./handlers
COPY tashooks ./tashooks
RUN python -m venv /opt/tashooks \
 && /opt/tashooks/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim
# /app/data exists, owned by tashooks, so that a fresh volume mounted there (compose `data`)
# starts with that owner: a volume on a missing path would be root's, and `file` steps fail.
RUN useradd --system --uid 10001 --home-dir /app --create-home tashooks \
 && install -d -o tashooks -g tashooks -m 0750 /app/data
COPY --from=build /opt/tashooks /opt/tashooks
COPY rules.yaml /app/rules.yaml
WORKDIR /app
USER tashooks
ENV PATH=/opt/tashooks/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TASHOOKS_HOST=0.0.0.0 \
    TASHOOKS_PORT=8080 \
    TASHOOKS_RULES=/app/rules.yaml \
    TASHOOKS_DATA_DIR=/app/data
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
# SIGTERM: the receiver drains, the worker finishes running jobs (grace 30 s).
STOPSIGNAL SIGTERM
CMD ["tashooks", "serve"]
