# syntax=docker/dockerfile:1
# longclip-search server: compiled JavaScript (dist/), production dependencies only, non-root.
#
# CPU image (the default target; add --build-arg WITH_FFMPEG=yes to index videos):
#   docker build -t longclip .
#   docker run --init -p 8080:8080 -v longclip-data:/data -v "$PWD/models/demo:/models:ro" longclip
#
# CUDA 12 image for GPU hosts (needs the NVIDIA Container Toolkit on the host):
#   docker build --target runtime-cuda -t longclip:cuda .
#   docker run --init --gpus all -p 8080:8080 -v longclip-data:/data -v "$PWD/models/demo:/models:ro" longclip:cuda
#
# It listens on $PORT (default 8080) on all interfaces (LONGCLIP_HOST=0.0.0.0); every other
# setting is an environment variable (LONGCLIP_*, see src/core/setting-table.ts), e.g.
# -e LONGCLIP_API_KEY=... to require a key on the write endpoints, or
# -e LONGCLIP_MEDIA_ROOT=/media plus a -v mount to index files by path.
# SIGTERM drains requests and saves the index within 25 s: `docker stop` waits 10 s unless
# given --time 30 (or --stop-timeout 30 at run), Kubernetes 30 s.
#
# Behind a TLS-intercepting proxy, the build's npm ci needs that proxy's CA: mount it and name
# it, e.g. `podman build -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/proxy-ca.crt:ro
# --build-arg NODE_EXTRA_CA_CERTS=/etc/ssl/certs/proxy-ca.crt .` (scripts/test-docker.sh does).

# A Debian bookworm image with Node.js in /usr/local (bin/node, bin/npm, include/node), as the
# official node images are; scripts/test-docker.sh builds one without a registry.
ARG NODE_IMAGE=node:24-bookworm-slim
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---- build: compiles dist/ and the page, then drops the development dependencies
FROM ${NODE_IMAGE} AS build
# Native addons (better-sqlite3, hnswlib-node) compile from source: no prebuilt download.
# libjpeg62-turbo-dev: the optional native JPEG decoder (scripts/build-native.mjs).
RUN apt-get update \
  && apt-get install -y --no-install-recommends python3 make g++ libjpeg62-turbo-dev \
  && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ARG NODE_EXTRA_CA_CERTS
# The CPU build of ONNX Runtime ships inside onnxruntime-node; skip its CUDA download.
# node-gyp takes the headers of the image's Node instead of downloading them.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
  npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
# npm ci's postinstall builds the native JPEG decoder from these two.
COPY scripts/build-native.mjs ./scripts/
COPY src/preprocess/jpeg-native ./src/preprocess/jpeg-native
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json openapi.yaml ./
COPY bin ./bin
COPY scripts ./scripts
COPY src ./src
COPY web ./web
# onnxruntime-node ships its binaries for every platform; the image keeps its own (~200 MB less).
RUN npm run build \
  && npm prune --omit=dev --no-audit --no-fund \
  && find node_modules/onnxruntime-node/bin -mindepth 2 -maxdepth 2 ! -name linux -exec rm -r {} + \
  && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 ! -name "$(node -p process.arch)" -exec rm -r {} +

# ---- build-cuda: the same tree plus ONNX Runtime's CUDA 12 execution provider
FROM build AS build-cuda
RUN ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js

# ---- runtime-cuda: CUDA 12 + cuDNN 9 runtime with the Node binary of the build image
FROM ${CUDA_IMAGE} AS runtime-cuda
COPY --from=build /usr/local/bin/node /usr/local/bin/node
# As in the CPU image: `--build-arg WITH_FFMPEG=yes` adds the base's (Ubuntu's) ffmpeg for videos.
ARG WITH_FFMPEG=no
RUN if [ "$WITH_FFMPEG" = yes ]; then \
    apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*; \
  fi \
  && groupadd --system longclip \
  && useradd --system --gid longclip --home-dir /app --shell /usr/sbin/nologin longclip \
  && mkdir -p /data /models \
  && chown longclip:longclip /data
WORKDIR /app
COPY --from=build-cuda /app/package.json /app/openapi.yaml ./
COPY --from=build-cuda /app/bin ./bin
COPY --from=build-cuda /app/dist ./dist
# The native JPEG decoder links bookworm's libjpeg.so.62, which this Ubuntu base lacks: the
# server logs that it could not load it and decodes with sharp (same pixels, more CPU).
COPY --from=build-cuda /app/build ./build
COPY --from=build-cuda /app/node_modules ./node_modules
ENV NODE_ENV=production \
  LONGCLIP_HOST=0.0.0.0 \
  PORT=8080 \
  LONGCLIP_DATA_DIR=/data \
  LONGCLIP_MODEL_DIR=/models \
  LONGCLIP_DEVICE=cuda
USER longclip
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.LONGCLIP_PORT || process.env.PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/cli/main.js", "serve"]

# ---- runtime (default): CPU
FROM ${NODE_IMAGE} AS runtime
# Videos need ffmpeg, which is large (docs/video.md): `--build-arg WITH_FFMPEG=yes` adds
# Debian's; without it the image serves images and answers videos with unsupported_video
# (test/dockerfile.test.ts runs these RUN lines with stand-in commands, for yes and no).
ARG WITH_FFMPEG=no
# libjpeg62-turbo: the library the native JPEG decoder (build/jpeg-native.node) links. apt's
# lists and package caches go too (about 80 MB: a base made by debootstrap keeps them).
RUN apt-get update \
  && apt-get install -y --no-install-recommends libjpeg62-turbo \
    $(if [ "$WITH_FFMPEG" = yes ]; then echo ffmpeg; fi) \
  && apt-get clean \
  && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
  && groupadd --system longclip \
  && useradd --system --gid longclip --home-dir /app --shell /usr/sbin/nologin longclip \
  && mkdir -p /data /models \
  && chown longclip:longclip /data
WORKDIR /app
COPY --from=build /app/package.json /app/openapi.yaml ./
COPY --from=build /app/bin ./bin
COPY --from=build /app/dist ./dist
COPY --from=build /app/build ./build
COPY --from=build /app/node_modules ./node_modules
ENV NODE_ENV=production \
  LONGCLIP_HOST=0.0.0.0 \
  PORT=8080 \
  LONGCLIP_DATA_DIR=/data \
  LONGCLIP_MODEL_DIR=/models \
  LONGCLIP_DEVICE=cpu
USER longclip
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.LONGCLIP_PORT || process.env.PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/cli/main.js", "serve"]
