#!/usr/bin/env bash
# Install ClinicFusion for the current user on Linux, without root. Re-running it upgrades the
# installation in place; the user's data (cases, logs, exports) and keys are never touched.
#
#   installer/install-linux.sh [options]
#
#   --source DIR          install from this source checkout (default: the one holding this script)
#   --wheel FILE          install this wheel instead (e.g. dist/clinicfusion-0.1.0-py3-none-any.whl)
#   --find-links DIR      offline: take every package from this wheelhouse (pip --no-index)
#   --torch-index URL     take torch==2.13.0 from this index (e.g. the CPU-only or a CUDA index
#                         of download.pytorch.org); default: PyPI, whose Linux wheel has CUDA
#   --python PY           the Python (3.11+) that creates the venv (default: python3)
#   --system-site-packages  let the venv see the system Python's packages
#   --use-env DIR         do not create a venv: use this existing environment, which has
#                         ClinicFusion installed already (it is never deleted by the uninstaller)
#   -h, --help            show this help
#
# Installs (XDG base directories are honoured):
#   app + venv   ${XDG_DATA_HOME:-~/.local/share}/clinicfusion-app/{venv,uninstall.sh}
#   command      ${XDG_BIN_HOME:-~/.local/bin}/clinicfusion
#   menu entry   ${XDG_DATA_HOME:-~/.local/share}/applications/clinicfusion.desktop
#   icons        ${XDG_DATA_HOME:-~/.local/share}/icons/hicolor/<size>/apps/clinicfusion.{png,svg}
# The app keeps its data in ~/.local/share/ClinicFusion and its keys in ~/.config/ClinicFusion
# (the per-user folders; see README). The app folder is named clinicfusion-app, not clinicfusion,
# so that it can never be the data folder on a case-insensitive file system.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$SCRIPT_DIR/.." && pwd)
WHEEL="" FIND_LINKS="" TORCH_INDEX="" PYTHON=python3 SYSTEM_SITE="" USE_ENV=""
TORCH_PIN="torch==2.13.0"

while [ $# -gt 0 ]; do
    case "$1" in
        --source) SOURCE=$(cd "$2" && pwd); shift 2 ;;
        --wheel) WHEEL=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        --find-links) FIND_LINKS=$(cd "$2" && pwd); shift 2 ;;
        --torch-index) TORCH_INDEX="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        --system-site-packages) SYSTEM_SITE="--system-site-packages"; shift ;;
        --use-env) USE_ENV=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "install-linux.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
BIN_HOME=${XDG_BIN_HOME:-$HOME/.local/bin}
APP_HOME="$DATA_HOME/clinicfusion-app"
APPS_DIR="$DATA_HOME/applications"
ICON_DIR="$DATA_HOME/icons/hicolor"
ICON_SRC="$SOURCE/assets/icons"
[ -f "$ICON_SRC/clinicfusion.svg" ] || ICON_SRC="$SCRIPT_DIR/../assets/icons"
DESKTOP_SRC="$SCRIPT_DIR/linux/clinicfusion.desktop"
WRAPPER="$BIN_HOME/clinicfusion"
MANIFEST="$APP_HOME/install-manifest.txt"
PNG_SIZES="16 24 32 48 64 128 256 512"

say() { printf '%s\n' "$*"; }
fail() { printf 'install-linux.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" != 0 ] || say "Note: running as root installs for root only; run as the clinician's own user."
mkdir -p "$APP_HOME" "$BIN_HOME" "$APPS_DIR"

if [ -n "$USE_ENV" ]; then
    ENV_DIR="$USE_ENV"
    [ -x "$ENV_DIR/bin/clinic-app" ] || fail "$ENV_DIR has no bin/clinic-app: install ClinicFusion there first."
    say "Using the existing environment $ENV_DIR (not managed by this installer)."
else
    ENV_DIR="$APP_HOME/venv"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || fail "$PYTHON is older than Python 3.11; pass --python with a newer one."
    if [ -f "$ENV_DIR/pyvenv.cfg" ]; then
        say "Upgrading the installation in $ENV_DIR (your data is kept)."
    else
        say "Creating the virtual environment $ENV_DIR."
        "$PYTHON" -m venv $SYSTEM_SITE "$ENV_DIR"
    fi
    PIP=("$ENV_DIR/bin/python" -m pip --disable-pip-version-check)
    OFFLINE=()
    [ -n "$FIND_LINKS" ] && OFFLINE=(--no-index --find-links "$FIND_LINKS")
    "${PIP[@]}" install -q --upgrade pip "${OFFLINE[@]}" || say "(pip itself was not upgraded)"
    if [ -n "$TORCH_INDEX" ]; then
        "${PIP[@]}" install "$TORCH_PIN" --index-url "$TORCH_INDEX"
    fi
    TARGET="$SOURCE"
    [ -n "$WHEEL" ] && TARGET="$WHEEL"
    # torch is pinned in the same resolution as monai and transformers (see pyproject.toml).
    "${PIP[@]}" install -q --upgrade --upgrade-strategy only-if-needed "${OFFLINE[@]}" \
        "$TARGET" "$TORCH_PIN"
    # The same version number with changed files (a source checkout): refresh the app itself.
    "${PIP[@]}" install -q --force-reinstall --no-deps "${OFFLINE[@]}" "$TARGET"
fi

CLINIC_APP="$ENV_DIR/bin/clinic-app"
VERSION=$("$CLINIC_APP" --version)

# The command: a tiny wrapper, so that the venv can be replaced without touching the menu.
cat > "$WRAPPER.tmp" <<EOF
#!/bin/sh
# ClinicFusion (installed by install-linux.sh; remove with $APP_HOME/uninstall.sh)
exec "$CLINIC_APP" "\$@"
EOF
chmod 755 "$WRAPPER.tmp"
mv -f "$WRAPPER.tmp" "$WRAPPER"

# The menu entry, pointing at the wrapper by its full path (~/.local/bin is often not on the
# desktop session's PATH).
sed -e "s|^Exec=.*|Exec=$WRAPPER|" -e "s|^TryExec=.*|TryExec=$WRAPPER|" \
    "$DESKTOP_SRC" > "$APPS_DIR/clinicfusion.desktop.tmp"
mv -f "$APPS_DIR/clinicfusion.desktop.tmp" "$APPS_DIR/clinicfusion.desktop"
chmod 644 "$APPS_DIR/clinicfusion.desktop"

ICONS_WRITTEN=()
for size in $PNG_SIZES; do
    folder="$ICON_DIR/${size}x${size}/apps"
    mkdir -p "$folder"
    install -m 644 "$ICON_SRC/clinicfusion-$size.png" "$folder/clinicfusion.png"
    ICONS_WRITTEN+=("$folder/clinicfusion.png")
done
mkdir -p "$ICON_DIR/scalable/apps"
install -m 644 "$ICON_SRC/clinicfusion.svg" "$ICON_DIR/scalable/apps/clinicfusion.svg"
ICONS_WRITTEN+=("$ICON_DIR/scalable/apps/clinicfusion.svg")

# Where the app keeps data and keys for this user (printed by the uninstaller, never removed).
{ read -r DATA_DIR; read -r KEYS_DIR; } < <("$ENV_DIR/bin/python" -c \
    'from clinic_app.config.settings import default_data_dir as d, default_keys_dir as k
print(d()); print(k())')

install -m 755 "$SCRIPT_DIR/uninstall-linux.sh" "$APP_HOME/uninstall.sh"
{
    echo "# ClinicFusion per-user installation (read by uninstall.sh)"
    echo "version=$VERSION"
    echo "app_home=$APP_HOME"
    echo "env=$ENV_DIR"
    if [ -n "$USE_ENV" ]; then echo "env_managed=no"; else echo "env_managed=yes"; fi
    echo "data_dir=$DATA_DIR"
    echo "keys_dir=$KEYS_DIR"
    echo "file=$WRAPPER"
    echo "file=$APPS_DIR/clinicfusion.desktop"
    for icon in "${ICONS_WRITTEN[@]}"; do echo "file=$icon"; done
} > "$MANIFEST"

command -v update-desktop-database >/dev/null && update-desktop-database -q "$APPS_DIR" || true
touch "$ICON_DIR"  # icon caches notice the change (no cache file is written)

say ""
say "Installed $VERSION for $(id -un)."
say "  start it:   the application menu (Science > ClinicFusion), or: $WRAPPER"
say "  check it:   $WRAPPER doctor      (and: $WRAPPER --smoke)"
say "  your data:  $DATA_DIR   keys: $KEYS_DIR"
say "  uninstall:  $APP_HOME/uninstall.sh   (keeps your data)"
case ":$PATH:" in *":$BIN_HOME:"*) ;; *) say "  note: $BIN_HOME is not on your PATH; the menu entry works regardless." ;; esac
