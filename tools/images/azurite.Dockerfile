# Azurite (the Azure Storage emulator) from the repository's npm lock, for docker-compose.test.yml where
# mcr.microsoft.com cannot be reached. Build from the repository root:
#   docker build -f tools/images/azurite.Dockerfile -t edge-model-loader/azurite:3.35.0 .
# Its command line is the official image's: `azurite-blob --blobHost 0.0.0.0 ...` (on PATH).
ARG NODE_IMAGE=node:20-bookworm-slim
FROM ${NODE_IMAGE}
WORKDIR /opt/azurite
COPY package.json package-lock.json ./
# Node trusts its bundled roots only; the system store too (a network that re-signs TLS, see build.py).
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN npm ci --no-audit --no-fund --loglevel=error && npm cache clean --force
ENV PATH=/opt/azurite/node_modules/.bin:$PATH
RUN useradd --system --uid 10004 --no-create-home azurite
USER azurite
EXPOSE 10000
CMD ["azurite-blob", "--blobHost", "0.0.0.0", "--blobPort", "10000", "--inMemoryPersistence", "--loose", \
     "--skipApiVersionCheck", "--disableTelemetry"]
