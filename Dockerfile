# Sluice broker image. Two stages: `build` installs every dependency and compiles (buf generate + tsc);
# the runtime stage gets only the compiled dist/, proto/ (loaded at run time for reflection) and the
# production node_modules, and runs as an unprivileged numeric user (Kubernetes runAsNonRoot checks it).
# Not built in this repo's CI (no Docker there); see docs/kubernetes.md.
#
#   docker build -t REGISTRY/sluice:0.1.0 . && docker push REGISTRY/sluice:0.1.0

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are here; the native modules
# (@node-rs/crc32, lz4-napi, snappy) and buf come as prebuilt platform packages.
RUN npm ci --ignore-scripts
COPY . .
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/proto ./proto
COPY --from=build /src/dist ./dist
RUN mkdir /data && chown 10001:10001 /data
USER 10001:10001
EXPOSE 7070 7071
# node itself is PID 1 (no npm, no shell), so SIGTERM reaches `sluice serve`, which drains and exits 0.
# The Helm chart replaces the command with a small sh that computes the node id and then `exec`s this.
ENTRYPOINT ["node", "--single-threaded-gc", "--initial-old-space-size=64", "/app/dist/src/cli/main.js"]
CMD ["serve", "--data-dir=/data", "--grpc-addr=0.0.0.0:7070", "--http-addr=0.0.0.0:7071"]
