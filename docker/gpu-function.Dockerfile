# syntax=docker/dockerfile:1
#
# The GPU function image: the sdflow agent in front of an AUTOMATIC1111 SD WebUI in the same container. The agent
# starts the WebUI on loopback (SDFLOW_SD_COMMAND: --api --nowebui --port 7861), waits until it answers, starts it
# again if it dies, and serves sdflow's one-request invoke protocol on 0.0.0.0:9000. sdflow's FC adapter creates one
# function per checkpoint from this image (SDFLOW_FC_IMAGE) and sets SD_MODEL, SDFLOW_DATA_DIR and the object-store
# settings on each; the same image runs anywhere else with those set by hand.
#
#   docker build -f docker/gpu-function.Dockerfile -t sdflow-gpu-function .
#   docker build -f docker/gpu-function.Dockerfile --build-arg WEBUI_REF=v1.10.1 -t sdflow-gpu-function:webui-1.10.1 .
#
# Build arguments:
#   WEBUI_REF              the AUTOMATIC1111/stable-diffusion-webui tag or commit to install
#   WEBUI_REPO             where to clone the WebUI from (a fork or an internal mirror)
#   STABLE_DIFFUSION_REPO  the Stability-AI "stablediffusion" code the WebUI's installer clones. Its original
#                          repository is no longer public (2025), which breaks a plain install; the default is the
#                          copy the WebUI's maintainers point to. Use an internal mirror if you have one.
#   CUDA_IMAGE, NODE_IMAGE the base images
#
# Models are not in the image. The WebUI reads checkpoints, VAEs and LoRAs from the agent's data dir, where the
# function's NAS or OSS mount puts them: $SDFLOW_DATA_DIR/objects/models/{stableDiffusion,sdVae,lora}/ (the layout of
# sdflow's object store, so an OSS mount of the bucket's models/ prefix at $SDFLOW_DATA_DIR/objects/models works).
# Mount that directory when running the image yourself:
#   docker run --gpus all -p 9000:9000 -v /srv/models:/mnt/sdflow/objects/models:ro \
#     -e SD_MODEL=my-model.safetensors -e SDFLOW_OBJECT_STORE=oss -e SDFLOW_OSS_BUCKET=… -e ALIBABA_CLOUD_… \
#     sdflow-gpu-function
#
# Not built in the project's CI: the machines it runs on have no Docker engine and no GPU.

ARG CUDA_IMAGE=nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04
ARG NODE_IMAGE=node:20.19.5-bookworm-slim

# --- sdflow, compiled once (plain JavaScript, the same on any platform) -------------------------------------------
FROM ${NODE_IMAGE} AS sdflow-build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
RUN npx tsc -p tsconfig.json

FROM ${NODE_IMAGE} AS node

# --- sdflow's production dependencies, built against the runtime's own C library (Ubuntu 22.04) ---------------------
FROM ${CUDA_IMAGE} AS sdflow-deps
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# --- the WebUI, installed at build time so an instance never installs anything at start -----------------------------
FROM ${CUDA_IMAGE}
ARG WEBUI_REPO=https://github.com/AUTOMATIC1111/stable-diffusion-webui.git
ARG WEBUI_REF=v1.10.1
ARG STABLE_DIFFUSION_REPO=https://github.com/w-e-w/stablediffusion.git
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/opt/hf-cache \
    STABLE_DIFFUSION_REPO=${STABLE_DIFFUSION_REPO}
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates git python3 python3-venv libgl1 libglib2.0-0 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 sdflow \
 && mkdir -p /opt/webui /opt/hf-cache /mnt/sdflow \
 && chown sdflow:sdflow /opt/webui /opt/hf-cache /mnt/sdflow
USER sdflow
RUN git clone "${WEBUI_REPO}" /opt/webui \
 && git -C /opt/webui checkout "${WEBUI_REF}" \
 && python3 -m venv /opt/webui/venv
WORKDIR /opt/webui
# The installer: torch, the requirements and the helper repositories, then --exit. No GPU is needed to build.
RUN venv/bin/python launch.py --skip-torch-cuda-test --no-download-sd-model --exit
# The CLIP tokenizer the WebUI fetches on its first checkpoint load, fetched now instead of on every cold start.
RUN venv/bin/python -c "from transformers import CLIPTokenizer; CLIPTokenizer.from_pretrained('openai/clip-vit-large-patch14')"

USER root
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=sdflow-deps /app/node_modules /app/node_modules
COPY --from=sdflow-build /src/dist /app/dist
COPY --from=sdflow-build /src/package.json /app/package.json
RUN chmod 755 /app/dist/cli/main.js && ln -s /app/dist/cli/main.js /usr/local/bin/sdflow
USER sdflow

# The agent: on every interface at 9000 (FC's SDFLOW_FC_PORT), the WebUI on loopback only. The FC adapter sets these
# again per function; they are here so the image also runs on its own.
ENV SDFLOW_AGENT_HOST=0.0.0.0 \
    SDFLOW_AGENT_PORT=9000 \
    SDFLOW_DATA_DIR=/mnt/sdflow \
    SDFLOW_SD_URL=http://127.0.0.1:7861 \
    SDFLOW_SD_START_TIMEOUT_S=600
# Expanded by /bin/sh when the agent starts the WebUI: the model directories follow SDFLOW_DATA_DIR, and a
# function's extraArgs (batch update) arrive as SDFLOW_SD_EXTRA_ARGS. `exec` makes the WebUI the agent's child.
ENV SDFLOW_SD_COMMAND='cd /opt/webui && exec venv/bin/python launch.py --api --nowebui --port 7861 \
--skip-prepare-environment --no-download-sd-model \
--ckpt-dir "$SDFLOW_DATA_DIR/objects/models/stableDiffusion" --vae-dir "$SDFLOW_DATA_DIR/objects/models/sdVae" \
--lora-dir "$SDFLOW_DATA_DIR/objects/models/lora" $SDFLOW_SD_EXTRA_ARGS'
EXPOSE 9000
# tini reaps what the WebUI leaves behind and forwards signals; FC's command (SDFLOW_FC_COMMAND, by default
# ["sdflow", "agent"]) replaces CMD and keeps this entrypoint.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sdflow", "agent"]
