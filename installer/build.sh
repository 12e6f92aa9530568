#!/usr/bin/env bash
# Build the frozen one-folder ClinicFusion bundle with PyInstaller, smoke-test it, archive it.
#
#   installer/build.sh [--venv DIR] [--torch-index URL] [--no-smoke] [--no-archive] [--dist DIR]
#
#   --venv DIR          build with this existing virtual environment (it must have the project
#                       and the `installer` extra installed); default: a fresh venv in
#                       build/build-venv with `pip install ".[installer]"`
#   --torch-index URL   install torch==2.13.0 from this index first (fresh venv only), e.g.
#                       https://download.pytorch.org/whl/cpu for a CPU-only bundle (much smaller
#                       than PyPI's Linux wheel, which bundles CUDA)
#   --no-smoke          skip running the bundle's --smoke check
#   --no-archive        skip the compressed archive
#   --dist DIR          where the bundle goes (default dist/)
#
# Runs on Linux, macOS and Windows (Git Bash). Prints the build time, the folder and archive
# sizes; exits non-zero if the build or the smoke check fails. See installer/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

VENV="" TORCH_INDEX="" SMOKE=1 ARCHIVE=1 DIST="$ROOT/dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) VENV="$2"; shift 2 ;;
        --torch-index) TORCH_INDEX="$2"; shift 2 ;;
        --no-smoke) SMOKE=0; shift ;;
        --no-archive) ARCHIVE=0; shift ;;
        --dist) DIST="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

case "$(uname -s)" in
    Linux*) PLATFORM=linux ;;
    Darwin*) PLATFORM=macos ;;
    MINGW*|MSYS*|CYGWIN*) PLATFORM=windows ;;
    *) echo "build.sh: unsupported system $(uname -s)" >&2; exit 2 ;;
esac
bin_dir() { if [ "$PLATFORM" = windows ]; then echo "$1/Scripts"; else echo "$1/bin"; fi; }
now() { date +%s; }

if [ -z "$VENV" ]; then
    VENV="$ROOT/build/build-venv"
    echo "== Fresh build environment in $VENV"
    rm -rf "$VENV"
    PY=${PYTHON:-python3}
    "$PY" -m venv "$VENV"
    "$(bin_dir "$VENV")/python" -m pip install -q --upgrade pip
    if [ -n "$TORCH_INDEX" ]; then
        "$(bin_dir "$VENV")/python" -m pip install -q "torch==2.13.0" --index-url "$TORCH_INDEX"
    fi
    "$(bin_dir "$VENV")/python" -m pip install -q ".[installer]"
fi
PYTHON_BIN="$(bin_dir "$VENV")/python"
"$PYTHON_BIN" -c "import PyInstaller, clinic_app" || {
    echo "build.sh: $VENV lacks PyInstaller or ClinicFusion: pip install -e \".[installer]\"" >&2
    exit 1
}
VERSION=$("$PYTHON_BIN" -c "from clinic_app._version import __version__; print(__version__)")
ARCH=$("$PYTHON_BIN" -c "import platform; print(platform.machine().lower())")

echo "== PyInstaller: ClinicFusion $VERSION for $PLATFORM-$ARCH"
START=$(now)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 QT_QPA_PLATFORM=offscreen
"$PYTHON_BIN" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$ROOT/build/pyinstaller" installer/clinicfusion.spec
BUILD_S=$(( $(now) - START ))
FOLDER="$DIST/ClinicFusion"
case "$PLATFORM" in
    linux) EXE="$FOLDER/ClinicFusion" ;;
    windows) EXE="$FOLDER/clinic-app.exe" ;;
    macos) EXE="$DIST/ClinicFusion.app/Contents/MacOS/ClinicFusion" ;;
esac
echo "== Built in ${BUILD_S}s: $EXE"

if [ "$SMOKE" = 1 ]; then
    echo "== Smoke check of the bundle"
    START=$(now)
    "$EXE" --smoke
    echo "== Smoke check passed in $(( $(now) - START ))s"
fi

SHIPPED="$FOLDER"
[ "$PLATFORM" = macos ] && SHIPPED="$DIST/ClinicFusion.app"
ARCHIVE_FILE=""
if [ "$ARCHIVE" = 1 ]; then
    BASE="ClinicFusion-$VERSION-$PLATFORM-$ARCH"
    START=$(now)
    case "$PLATFORM" in
        linux)
            if command -v zstd >/dev/null; then
                ARCHIVE_FILE="$DIST/$BASE.tar.zst"
                tar -C "$DIST" -cf - ClinicFusion | zstd -q -T0 -10 -f -o "$ARCHIVE_FILE"
            else
                ARCHIVE_FILE="$DIST/$BASE.tar.gz"
                tar -C "$DIST" -czf "$ARCHIVE_FILE" ClinicFusion
            fi ;;
        macos)
            ARCHIVE_FILE="$DIST/$BASE.zip"
            ditto -c -k --sequesterRsrc --keepParent "$SHIPPED" "$ARCHIVE_FILE" ;;
        windows)
            ARCHIVE_FILE="$DIST/$BASE.zip"
            "$PYTHON_BIN" -c "import shutil, sys; shutil.make_archive(sys.argv[1], 'zip', sys.argv[2], 'ClinicFusion')" \
                "${ARCHIVE_FILE%.zip}" "$DIST" ;;
    esac
    echo "== Archive written in $(( $(now) - START ))s"
fi

echo
echo "ClinicFusion $VERSION ($PLATFORM-$ARCH)"
echo "  build time:  ${BUILD_S}s"
echo "  bundle:      $SHIPPED  $(du -sh "$SHIPPED" | cut -f1)"
[ -n "$ARCHIVE_FILE" ] && echo "  archive:     $ARCHIVE_FILE  $(du -sh "$ARCHIVE_FILE" | cut -f1)"
exit 0
