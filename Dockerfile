# digisign-web in a container (Debian 12 "bookworm").
#
#   docker build -t digisign-web .
#   docker run --rm -it --network host digisign-web
#
# The server binds to loopback only (127.0.0.1:53952). Inside a container that
# is the container's own loopback, unreachable from the host's browser even
# with -p 53952:53952 - so run it with `--network host`.
# To use a real card reader instead of the virtual card, share the host's pcscd
# socket (-v /run/pcscd:/run/pcscd) and override the command.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# pcscd: PC/SC daemon; libpcsclite-dev + gcc: pyscard is built from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends pcscd libpcsclite-dev gcc \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . /src
RUN pip install /src

EXPOSE 53952

CMD ["digisign-web", "serve", "--virtual-card", "fineid-v4", "--dialog", "auto"]
