# liveprof service image: `liveprof serve`, configured by LIVEPROF_* variables
# (ingest/config.py; docker-compose.yml sets them).
#
# Build stage: compile the C extension (protocol/eventlog/_speedups.c) into a
# wheel with liveprof's dependencies; the runtime stage installs the wheels
# without a compiler and checks the extension really got built (setup.py
# marks it optional, so a silent fallback to pure Python is refused here).

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protocol ./protocol
COPY ingest ./ingest
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/liveprof \
        --create-home --shell /usr/sbin/nologin liveprof
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && python -c "import protocol.eventlog._speedups"
COPY deploy/liveprof/healthcheck.py /usr/local/bin/liveprof-healthcheck
ENV PYTHONUNBUFFERED=1 \
    LIVEPROF_STATE_DIR=/var/lib/liveprof \
    LIVEPROF_MONITOR_UDP_HOST=0.0.0.0 \
    LIVEPROF_MONITOR_UDP_PORT=8242
USER liveprof
WORKDIR /var/lib/liveprof
VOLUME ["/var/lib/liveprof"]
# monitor datagrams; the HTTP API (compose publishes both on 127.0.0.1 by default)
EXPOSE 8242/udp 8080/tcp
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/liveprof-healthcheck"]
CMD ["liveprof", "serve"]
