# A stand-in for a node:bookworm-slim image built only from Debian packages (see python-base.Dockerfile).
# Debian bookworm's Node.js is 18: Azurite 3.35 runs on it (npm warns EBADENGINE: it asks for >= 20).
ARG DEBIAN_IMAGE=localhost/edge-model-loader/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
ENV LANG=C.UTF-8
CMD ["node"]
