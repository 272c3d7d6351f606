# NATS with JetStream from Debian's nats-server package, for machines without an image
# registry (compose's NATS_IMAGE, the JetStream cluster test). Like the official image,
# nats-server is the entrypoint, so compose's and the test's argument lists fit both.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim
FROM ${BASE_IMAGE}
RUN set -eu; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    install -d -o nats -g nats /data
USER nats
WORKDIR /data
EXPOSE 4222 6222 8222
# The monitoring port's /healthz answers 200 once JetStream is up; the base image has
# Python and no curl.
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["python3", "-c", \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8222/healthz', timeout=2)"]
ENTRYPOINT ["/usr/sbin/nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]
