#!/usr/bin/env bash
# imgsearch test command: every test, in the release build and in the
# AddressSanitizer + UndefinedBehaviorSanitizer build. Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

echo "== release build: ctest"
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS")

if [ -d build-asan ] && [ "${SKIP_ASAN:-0}" != 1 ]; then
  echo "== asan+ubsan build: ctest"
  cmake --build build-asan -j "$JOBS"
  # ONNX Runtime and libvips are not instrumented; leaks inside them are not ours to fix.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  (cd build-asan && ctest --output-on-failure -j "$JOBS")
fi
