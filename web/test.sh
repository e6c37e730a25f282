#!/usr/bin/env bash
# The browser tests, in headless Chromium on its WebGPU (SwiftShader where
# there is no GPU): the whole op registry against the wasm CPU backend, in f32 and in
# f16 and bf16 (16-bit storage packed in words on WebGPU), then the demo
# page end to end (training to at least 90%, a drawn digit read, a screenshot in
# target/web-demo.png). Anything missing is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
# wasm-bindgen-cli where .ci/run installs it (else from PATH).
export PATH="$PWD/target/tools/bin:$PATH"
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
missing() { echo "web/test.sh: $1 is missing; $2" >&2; exit 1; }
command -v chromium >/dev/null || missing chromium "apt-get install chromium"
command -v chromedriver >/dev/null || missing chromedriver "apt-get install chromium-driver"
command -v python3 >/dev/null || missing python3 "apt-get install python3"
command -v wasm-bindgen-test-runner >/dev/null ||
    missing wasm-bindgen-test-runner "cargo install wasm-bindgen-cli --version $want"
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
    missing "the wasm32 target" "rustup target add wasm32-unknown-unknown"
export CHROMEDRIVER
CHROMEDRIVER=$(command -v chromedriver)
# The registry's cases take about a minute and a half under SwiftShader (the half
# passes another 40 s): past the runner's default 20 s per test.
export WASM_BINDGEN_TEST_TIMEOUT=900
cargo test --release --target wasm32-unknown-unknown --test web_registry
bash web/build.sh
python3 web/e2e.py --epochs 15 --min-accuracy 0.90
