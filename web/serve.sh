#!/usr/bin/env bash
# Serves the demo on http://127.0.0.1:${PORT:-8000}/ (build it first: web/build.sh).
# WebGPU needs a secure context: localhost counts as one.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -f pkg/wgrad_web_bg.wasm ]; then
    echo "web/serve.sh: build the demo first: web/build.sh" >&2
    exit 1
fi
port=${PORT:-8000}
echo "open http://127.0.0.1:$port/ in a browser with WebGPU"
exec python3 -m http.server "$port" --bind 127.0.0.1
