# digisign-web for integrators' CI (D41): the SCS server with the virtual FINEID card and the automatic
# dialog, reachable from outside the container (serve --listen, D40). Debian 12 "bookworm".
#
#   docker build -t digisign-web .
#   docker run --rm -p 53952:53952 digisign-web
#
# Publish the port under the same number (the Host check wants localhost:53952) and use
# https://localhost:53952 from the test browser; ignore the certificate there, or trust the container's CA:
#   docker cp <container>:/state/tls/ca.pem .
# The automatic dialog approves the virtual card only, with its PINs (1234 / 123456). Not for real cards.

# --- build: pyscard compiles against the PC/SC headers ------------------------------------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libpcsclite-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . /src
RUN python -m venv /opt/digisign-web \
 && /opt/digisign-web/bin/pip install /src

# --- run: the virtual environment, the PC/SC client library and nothing to build with -----------------------
FROM python:3.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="digisign-web" \
      org.opencontainers.image.description="Local SCS v1.1 signing server with a virtual FINEID card, for CI" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.documentation="README.md, section 'Use it in CI'"

RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcsclite1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /state --create-home --shell /usr/sbin/nologin digisign \
 && chmod 0700 /state

COPY --from=build /opt/digisign-web /opt/digisign-web

ENV PATH=/opt/digisign-web/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    XDG_CONFIG_HOME=/state/config

USER 10001:10001
WORKDIR /state
EXPOSE 53952

# The container's own loopback, as the same uid as the server (D30): /version through the server's CA.
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import json, ssl, urllib.request; c = ssl.create_default_context(cafile='/state/tls/ca.pem'); r = urllib.request.urlopen('https://localhost:53952/version', context=c, timeout=4); assert json.load(r)['version'] == '1.1'"]

# serve handles SIGTERM (docker stop) like Ctrl-C.
CMD ["digisign-web", "serve", "--listen", "0.0.0.0", "--port", "53952", "--state-dir", "/state", \
     "--virtual-card", "fineid-v4", "--dialog", "auto"]
