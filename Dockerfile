# syntax=docker/dockerfile:1
# longclip-search server.
#
# CPU image (the default target):
#   docker build -t longclip .
#   docker run -p 8080:8080 -v longclip-data:/data -v "$PWD/models/demo:/models:ro" longclip
#
# CUDA 12 image for GPU hosts (needs the NVIDIA Container Toolkit on the host):
#   docker build --target runtime-cuda -t longclip:cuda .
#   docker run --gpus all -p 8080:8080 -v longclip-data:/data -v "$PWD/models/demo:/models:ro" longclip:cuda
#
# Every setting is an environment variable (LONGCLIP_*, see src/config.ts), e.g.
# -e LONGCLIP_API_KEY=... to require a key on the write endpoints, or
# -e LONGCLIP_MEDIA_ROOT=/media plus a -v mount to index files by path.

ARG NODE_IMAGE=node:20-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---- build: native addons (better-sqlite3, hnswlib-node) need a compiler toolchain
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# The CPU build of ONNX Runtime ships inside onnxruntime-node; skip its CUDA download.
ENV ONNXRUNTIME_NODE_INSTALL=skip
# Dev dependencies stay: the server runs its TypeScript sources through tsx.
RUN npm ci --no-audit --no-fund
COPY . .
# The web UI page (dist/web/index.html): built here, as the runtime user cannot write /app.
RUN node --import tsx scripts/build-web.ts

# ---- build-cuda: the same tree plus ONNX Runtime's CUDA 12 execution provider
FROM build AS build-cuda
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js

# ---- runtime-cuda: CUDA 12 + cuDNN 9 runtime with the Node binary of the build image
FROM ${CUDA_IMAGE} AS runtime-cuda
COPY --from=build /usr/local/bin/node /usr/local/bin/node
RUN groupadd --system longclip \
  && useradd --system --gid longclip --home-dir /app --shell /usr/sbin/nologin longclip \
  && mkdir -p /data /models \
  && chown longclip:longclip /data
WORKDIR /app
COPY --from=build-cuda /app /app
ENV NODE_ENV=production \
  LONGCLIP_HOST=0.0.0.0 \
  LONGCLIP_PORT=8080 \
  LONGCLIP_DATA_DIR=/data \
  LONGCLIP_MODEL_DIR=/models \
  LONGCLIP_DEVICE=cuda
USER longclip
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.LONGCLIP_PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/longclip.js", "serve"]

# ---- runtime (default): CPU
FROM ${NODE_IMAGE} AS runtime
RUN groupadd --system longclip \
  && useradd --system --gid longclip --home-dir /app --shell /usr/sbin/nologin longclip \
  && mkdir -p /data /models \
  && chown longclip:longclip /data
WORKDIR /app
COPY --from=build /app /app
ENV NODE_ENV=production \
  LONGCLIP_HOST=0.0.0.0 \
  LONGCLIP_PORT=8080 \
  LONGCLIP_DATA_DIR=/data \
  LONGCLIP_MODEL_DIR=/models \
  LONGCLIP_DEVICE=cpu
USER longclip
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.LONGCLIP_PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/longclip.js", "serve"]
