# A stand-in for python:3.11-slim-bookworm built only from Debian packages, for machines that reach
# Debian's mirrors, PyPI and npm but no image registry. `make images` builds it FROM the minimal Debian
# root file system it makes with debootstrap, and passes it to the module Dockerfiles as PYTHON_IMAGE.
# Debian's python3 is 3.11 on bookworm, like the official image; `python` and `pip` are on PATH as there.
ARG DEBIAN_IMAGE=localhost/edge-model-loader/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates passwd \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && ln -s /usr/bin/python3 /usr/local/bin/python \
    && ln -s /usr/bin/pip3 /usr/local/bin/pip
ENV LANG=C.UTF-8
CMD ["python3"]
