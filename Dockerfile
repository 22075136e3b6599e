# meet in a container: the wheel is built in one stage and installed into a virtual environment
# in a slim runtime stage, run as an unprivileged user. See docs/deploy.md and compose.yaml.
#
#   docker build -t meet .
#   docker run -d --name meet --network host -v meet-data:/var/lib/meet -e MEET_SERVER__HOST=127.0.0.1 \
#     -e MEET_SERVER__PUBLIC_URL=https://meet.example.org -e MEET_SERVER__PROXY_HOPS=1 meet
#
# (127.0.0.1: only the reverse proxy on the host may reach meet when it trusts X-Forwarded-For.)
#
# Configuration: environment variables MEET_<SECTION>__<KEY> (they override the file), and/or a
# config file mounted at /etc/meet/meet.toml (the working directory: meet reads ./meet.toml when
# present). Data (database, generated secret key, mail outbox) lives in the volume /var/lib/meet.

ARG PYTHON_VERSION=3.12

# --- build: the wheel, exactly as `python -m build` makes it from a checkout ---------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
RUN pip install --no-cache-dir --disable-pip-version-check "build>=1.2"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY meet ./meet
COPY web ./web
COPY contrib ./contrib
RUN python -m build --wheel --outdir /dist .

# --- runtime: the wheel in a venv, nothing else -------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
COPY --from=build /dist /tmp/dist
# aiortc, av, cryptography and argon2 ship manylinux wheels: no compiler or system libraries needed.
RUN python -m venv /opt/meet \
    && /opt/meet/bin/pip install --no-cache-dir --disable-pip-version-check /tmp/dist/meet-*.whl \
    && rm -rf /tmp/dist \
    && groupadd --system --gid 10001 meet \
    && useradd --system --uid 10001 --gid meet --home-dir /var/lib/meet --shell /usr/sbin/nologin meet \
    && install -d -o meet -g meet -m 0700 /var/lib/meet \
    && install -d -m 0755 /etc/meet

ENV PATH=/opt/meet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MEET_SERVER__HOST=0.0.0.0 \
    MEET_SERVER__PORT=8080 \
    MEET_STORAGE__DATA_DIR=/var/lib/meet \
    MEET_RTC__UDP_PORTS=40000-40999

WORKDIR /etc/meet
VOLUME ["/var/lib/meet"]
# HTTP (put a TLS-terminating reverse proxy in front), and the relay's media range: keep it equal
# to MEET_RTC__UDP_PORTS, and publish it 1:1 (or run with --network host, see compose.yaml).
EXPOSE 8080/tcp 40000-40999/udp

USER meet:meet
# Ready = the database answers and takes writes (503 otherwise); Python from the image, no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/ready' % os.environ.get('MEET_SERVER__PORT', '8080'), timeout=4)"]

# SIGTERM (docker stop) shuts meet down gracefully within [server] graceful_timeout + 5 s + the
# relay workers' 3 s: give it `docker stop --time 20` (compose.yaml: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["meet"]
CMD ["serve"]
