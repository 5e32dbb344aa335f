# The runtime stand-in of the module images (their RUNTIME_IMAGE): Debian's python3 3.11 without pip,
# venv or setuptools, which only the build stage needs (python-base.Dockerfile has them). Its
# /usr/bin/python3.11 is the interpreter the build stage's uv-made venv points at.
ARG DEBIAN_IMAGE=localhost/edge-model-loader/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates passwd \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python
ENV LANG=C.UTF-8
CMD ["python3"]
