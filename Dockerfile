# Node 24 LTS on Debian 13 (engines.node >=24; .node-version pins the exact version tested).
# Build stage: compile TypeScript with the dev dependencies.
FROM node:24-trixie-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
RUN npx tsc -p tsconfig.json

# Runtime stage: production dependencies and compiled code only, as a non-root user.
FROM node:24-trixie-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
# The Sigstore public-good TUF root and trusted-root snapshot (docs/operating.md, "Sigstore trusted roots").
COPY config/sigstore ./config/sigstore
USER node
EXPOSE 5443
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve", "--config", "/etc/trustgate/trustgate.yaml"]
