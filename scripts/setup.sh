#!/usr/bin/env bash
# imgsearch setup: system packages, ONNX Runtime, model weights, and the builds.
#
#   bash scripts/setup.sh            # everything (needs root or sudo for apt-get)
#   SKIP_APT=1 bash scripts/setup.sh # when the system packages are already there
#
# Idempotent: re-running skips what is already done. Everything it makes lives in
# .venv/, third_party/, models/, build/ and build-asan/ (all git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=${JOBS:-$(nproc)}
ORT_VERSION=1.21.1   # the PyPI wheel that carries libonnxruntime.so
ORT_HEADERS_DEB_SUITE=trixie  # Debian ships ORT's headers (libonnxruntime-dev 1.21) from trixie on

log() { printf '\n== %s\n' "$*"; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

# ---------------------------------------------------------------------------
# 1. System packages (Debian 12)
APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  python3 python3-venv
  libvips-dev libvips-tools     # decoding: JPEG/PNG/WebP/GIF/TIFF/HEIC/BMP, EXIF, shrink-on-load, thumbnails
  libfaiss-dev libopenblas0-pthread libopenblas-dev  # the vector index; OpenBLAS (see ../shared/MEASURED.md)
  libsqlite3-dev                # the catalog
  libgtest-dev libgmock-dev     # tests
  libcli11-dev nlohmann-json3-dev libxxhash-dev libcpp-httplib-dev
  clang-format
  chromium                      # the web app's end-to-end tests (headless)
)
if [ "${SKIP_APT:-0}" != 1 ]; then
  log "apt packages"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------
# 2. Python tools (model conversion, reference checks) in a private venv
log "python venv (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tools/requirements.txt

# ---------------------------------------------------------------------------
# 3. ONNX Runtime: the shared library from the official PyPI wheel, the C/C++
#    headers from Debian's libonnxruntime-dev (same 1.21 API). Set ONNXRUNTIME_ROOT
#    to use an existing install instead (include/ + lib/libonnxruntime.so).
ORT_DIR=$ROOT/third_party/onnxruntime
if [ -n "${ONNXRUNTIME_ROOT:-}" ]; then
  log "using ONNX Runtime from ONNXRUNTIME_ROOT=$ONNXRUNTIME_ROOT"
  ORT_DIR=$ONNXRUNTIME_ROOT
elif [ ! -f "$ORT_DIR/include/onnxruntime_cxx_api.h" ] || [ ! -e "$ORT_DIR/lib/libonnxruntime.so" ]; then
  log "ONNX Runtime $ORT_VERSION"
  mkdir -p "$ORT_DIR/lib" "$ORT_DIR/include"
  ort_so=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n1)
  cp -f "$ort_so" "$ORT_DIR/lib/"
  ln -sf "$(basename "$ort_so")" "$ORT_DIR/lib/libonnxruntime.so"
  ln -sf "$(basename "$ort_so")" "$ORT_DIR/lib/libonnxruntime.so.1"
  # Headers: download (not install) the -dev package with a private apt state dir,
  # so the system's sources stay untouched.
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  cat >"$tmp/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $ORT_HEADERS_DEB_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  o=(-oDir::Etc::SourceList="$tmp/debian.sources" -oDir::Etc::SourceParts=/dev/null
     -oDir::State::Lists="$tmp/lists" -oDir::Cache="$tmp/cache" -oAPT::Sandbox::User=root)
  apt-get "${o[@]}" update -qq
  (cd "$tmp" && apt-get "${o[@]}" download libonnxruntime-dev >/dev/null)
  dpkg-deb -x "$tmp"/libonnxruntime-dev_*.deb "$tmp/x"
  cp -rf "$tmp"/x/usr/include/onnxruntime/* "$ORT_DIR/include/"
  rm -rf "$tmp"
fi

# ---------------------------------------------------------------------------
# 4. Model weights -> ONNX (once). The weights come from PyPI packages installed above.
log "models"
for m in efficientnet-lite0 efficientnet-lite1 efficientnet-lite2; do
  if [ ! -f "models/$m/model.onnx" ] || [ tools/convert_efficientnet_lite.py -nt "models/$m/model.onnx" ]; then
    .venv/bin/python tools/convert_efficientnet_lite.py --model "$m" --out "models/$m" \
      --labels data/imagenet-classes.tsv
  fi
done

# ---------------------------------------------------------------------------
# 4b. The web UI: web/dist, served by `imgsearch serve` (Node.js >= 20.19 and npm needed;
#     npm ci only when package-lock.json changed since the last install).
log "web UI (web/dist)"
command -v npm >/dev/null || { echo "setup: npm not found: install Node.js >= 20.19 with npm" >&2; exit 1; }
(
  cd web
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  npm run build
)

# ---------------------------------------------------------------------------
# 5. Builds: release (build/) and AddressSanitizer + UBSan (build-asan/)
log "build (release)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DONNXRUNTIME_ROOT="$ORT_DIR" >/dev/null
cmake --build build -j "$JOBS"
if [ "${SKIP_ASAN:-0}" != 1 ]; then
  log "build (asan+ubsan)"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIMGSEARCH_SANITIZE=ON \
    -DONNXRUNTIME_ROOT="$ORT_DIR" >/dev/null
  cmake --build build-asan -j "$JOBS"
fi
log "setup done: try  build/imgsearch --help"
