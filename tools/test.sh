#!/usr/bin/env bash
# Every test: the native suite with the `mpi` feature (CPU, the GPU tests on the best
# adapter found, and the data-parallel tests under mpirun), then the browser tests
# (web/test.sh). .ci/run installs what both need and runs this.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --features mpi
bash web/test.sh
