#!/usr/bin/env bash
# Local quickstart on a fresh Debian/Ubuntu machine: installs what is missing (Node 24 from the
# npm registry where the machine's node is older, see scripts/ensure-node.sh), starts registry:2
# and trustgate with development certificates on loopback, and prints how to point skopeo, podman
# or docker at it. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
QS=$(realpath -m "${QS_DIR:-.tmp/quickstart}")
PORT=${TRUSTGATE_PORT:-5443}
REG_PORT=${QS_REGISTRY_PORT:-5000}

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
if [ ${#need[@]} -gt 0 ]; then
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
source scripts/ensure-node.sh
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run -s build

mkdir -p "$QS/registry-data" "$QS/keys/trusted"
node dist/src/cli/main.js certs --dir "$QS/certs" --host localhost --host 127.0.0.1
PASSWORD_FILE="$QS/admin.password"
[ -f "$PASSWORD_FILE" ] || node -e "process.stdout.write(require('node:crypto').randomBytes(18).toString('base64url'))" >"$PASSWORD_FILE"
htpasswd -bBc "$QS/htpasswd" admin "$(cat "$PASSWORD_FILE")" 2>/dev/null
# A publisher key, trusted for every repository of the quickstart ("release").
PASSPHRASE_FILE="$QS/release.passphrase"
if [ ! -f "$QS/release.key" ]; then
  node -e "process.stdout.write(require('node:crypto').randomBytes(18).toString('base64url'))" >"$PASSPHRASE_FILE"
  TRUSTGATE_KEY_PASSPHRASE="$(cat "$PASSPHRASE_FILE")" node dist/src/cli/main.js keygen --out "$QS/release"
fi
cp "$QS/release.pub" "$QS/keys/trusted/release.pub"

cat >"$QS/registry.yml" <<YML
version: 0.1
log: { level: warn, accesslog: { disabled: true } }
storage:
  filesystem: { rootdirectory: $QS/registry-data }
  delete: { enabled: true }
http: { addr: 127.0.0.1:$REG_PORT, secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n') }
YML
cat >"$QS/trustgate.yaml" <<YML
listen: { host: 127.0.0.1, port: $PORT }
tls: { cert: certs/server.crt, key: certs/server.key }
upstream: { url: http://127.0.0.1:$REG_PORT }
auth: { htpasswd: htpasswd, tokenKeyDir: keys/token }
policy:
  admins: [admin]
  access:
    - { repos: ['**'], pull: ['*'], push: [admin], delete: [admin] }
trust:
  keysDir: keys/trusted
  rules:
    - { repos: ['**'], keys: [release], mode: enforce }
YML

docker-registry serve "$QS/registry.yml" &
REG_PID=$!
trap 'kill $REG_PID 2>/dev/null || true' EXIT
mkdir -p "$QS/skopeo-certs" && cp "$QS/certs/ca.crt" "$QS/skopeo-certs/ca.crt"
cat <<MSG

trustgate: https://localhost:$PORT  (registry:2 behind it on 127.0.0.1:$REG_PORT, loopback only)
  user: admin   password: $(cat "$PASSWORD_FILE")   (in $QS/admin.password)
  CA:   $QS/certs/ca.crt

  skopeo login --cert-dir $QS/skopeo-certs -u admin --password-stdin localhost:$PORT <$QS/admin.password
  skopeo copy --dest-cert-dir $QS/skopeo-certs oci:YOUR-OCI-LAYOUT-DIR:TAG docker://localhost:$PORT/demo/app:1   # or docker-archive:FILE
  skopeo copy --src-cert-dir $QS/skopeo-certs docker://localhost:$PORT/demo/app:1 oci:/tmp/app:1   # "denied: … has no signature" until signed
  podman: sudo mkdir -p /etc/containers/certs.d/localhost:$PORT && sudo cp $QS/certs/ca.crt /etc/containers/certs.d/localhost:$PORT/
  docker: sudo mkdir -p /etc/docker/certs.d/localhost:$PORT && sudo cp $QS/certs/ca.crt /etc/docker/certs.d/localhost:$PORT/

Images pull only when signed by the release key ($QS/release.key, public half in $QS/keys/trusted/); run from $PWD:
  export PATH=$(dirname "$(command -v node)"):\$PATH   # Node $(node --version)
  export TRUSTGATE_USERNAME=admin TRUSTGATE_PASSWORD=\$(cat $QS/admin.password)
  TRUSTGATE_KEY_PASSPHRASE=\$(cat $QS/release.passphrase) \\
    node dist/src/cli/main.js sign localhost:$PORT/demo/app:1 --key $QS/release.key --ca-file $QS/certs/ca.crt
  node dist/src/cli/main.js verify localhost:$PORT/demo/app:1 --key $QS/release.pub --ca-file $QS/certs/ca.crt
MSG
node dist/src/cli/main.js serve --config "$QS/trustgate.yaml"
