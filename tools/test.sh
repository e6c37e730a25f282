#!/usr/bin/env bash
# Every test: the native suite (CPU, and the GPU tests on the best adapter found), then
# the browser tests (web/test.sh). .ci/run installs what both need and runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release
bash web/test.sh
