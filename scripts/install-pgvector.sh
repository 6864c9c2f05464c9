#!/usr/bin/env bash
# Builds and installs the pgvector extension from a source archive into the PostgreSQL server
# that `pg_config` names, unless that server already has it. CI runs it (.ci/run); a developer
# can too:
#
#   bash scripts/install-pgvector.sh [ARCHIVE]
#
# ARCHIVE defaults to vendor/pgvector-0.8.6.tar.gz in ../shared beside the checkout (or in
# $LONGCLIP_SHARED). Needs the
# server's development files (Debian: apt-get install postgresql-server-dev-15), make and a C
# compiler; `make install` writes into the server's directories, so it runs as root (sudo when
# not root). The build happens in a temporary directory that is removed afterwards; it drops
# -march=native (OPTFLAGS=""), so the result runs on any x86-64 host.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
archive=${1:-${LONGCLIP_SHARED:-$root/../shared}/vendor/pgvector-0.8.6.tar.gz}
# The sha256 of pgvector 0.8.6's `git archive` (tag v0.8.6), as ../shared/README.md gives it.
known_sha=5743dac39fdfa740533cf95e71b033bd5513b71dda194b3cf19464ccbf76f3fb

if ! command -v pg_config >/dev/null; then
  echo "install-pgvector: pg_config not found; install the server's development files" \
    "(Debian: apt-get install postgresql-server-dev-15)" >&2
  exit 1
fi
control="$(pg_config --sharedir)/extension/vector.control"
if [ -f "$control" ]; then
  echo "install-pgvector: already installed ($(grep default_version "$control" | tr -d "' "))"
  exit 0
fi
if [ ! -f "$archive" ]; then
  echo "install-pgvector: $archive not found; pass the pgvector source archive as the argument" >&2
  exit 1
fi
if [ "$(basename "$archive")" = pgvector-0.8.6.tar.gz ]; then
  actual=$(sha256sum "$archive" | cut -d' ' -f1)
  if [ "$actual" != "$known_sha" ]; then
    echo "install-pgvector: $archive has sha256 $actual, expected $known_sha" >&2
    exit 1
  fi
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$archive" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
started=$SECONDS
make -C "$src" -j"$(nproc)" OPTFLAGS="" >/dev/null
$SUDO make -C "$src" OPTFLAGS="" install >/dev/null
echo "install-pgvector: built and installed $(basename "$src") for PostgreSQL" \
  "$(pg_config --version | awk '{print $2}') in $((SECONDS - started)) s"
