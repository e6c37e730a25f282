#!/usr/bin/env bash
# Builds the browser demo: the wasm module (profile `web`: size-optimised, LTO) and its
# JavaScript bindings into web/pkg/. Needs the wasm32 target and wasm-bindgen-cli at the version of
# wasm-bindgen in Cargo.lock (see the README, "In the browser").
set -euo pipefail
cd "$(dirname "$0")/.."
# wasm-bindgen-cli where .ci/run installs it (else from PATH).
export PATH="$PWD/target/tools/bin:$PATH"
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "web/build.sh: needs wasm-bindgen-cli $want (found: ${have:-none});" \
         "install it with: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
cargo build -p wgrad-web --target wasm32-unknown-unknown --profile web
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
    --out-dir web/pkg \
    target/wasm32-unknown-unknown/web/wgrad_web.wasm
wasm=web/pkg/wgrad_web_bg.wasm
# No wasm-opt pass: Debian's binaryen (108) breaks wasm-bindgen's externref table (the
# page then fails in WebAssembly.Table.set), and -Oz saved only 7% over the profile's
# opt-level "s" with LTO.
size=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "web/pkg/wgrad_web_bg.wasm: $size bytes ($gz gzipped)"
