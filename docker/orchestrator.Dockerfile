# syntax=docker/dockerfile:1
#
# The sdflow orchestrator: the API and the worker in one image; the command picks the role.
#
#   docker build -f docker/orchestrator.Dockerfile -t sdflow-orchestrator .
#   docker run -p 8080:8080 --env-file prod.env sdflow-orchestrator          # the API (the default command)
#   docker run --env-file prod.env sdflow-orchestrator worker                # a worker
#
# Configuration comes from the environment (docs/deploy.md lists every setting); nothing secret is baked in.
# Not built in the project's CI: the machines it runs on have no Docker engine.

ARG NODE_IMAGE=node:20.19.5-bookworm-slim

# --- build: compile TypeScript, bundle the workflows, then keep only the production dependencies ---------------
FROM ${NODE_IMAGE} AS build
# better-sqlite3 compiles from source when no prebuilt binary matches the platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src
COPY console ./console
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime ------------------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    SDFLOW_DATA_DIR=/var/lib/sdflow
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
# dist/ holds the compiled code and dist/workflow-bundle.js, which the worker loads instead of bundling at start.
COPY --from=build /src/dist ./dist
COPY docker/healthcheck.mjs ./healthcheck.mjs
# The data dir holds only what the local adapters keep; with OSS and Tablestore it stays nearly empty.
RUN mkdir -p /var/lib/sdflow && chown node:node /var/lib/sdflow
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["api"]
