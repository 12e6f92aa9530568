#!/usr/bin/env bash
# Remove ClinicFusion installed by install-linux.sh for the current user: the command, the menu
# entry, the icons and the app's venv. The user's data and keys are NOT removed: this prints
# where they are and how to remove them.
#
#   ~/.local/share/clinicfusion-app/uninstall.sh      (copied there by the installer)
#   installer/uninstall-linux.sh                      (the same script, from the source tree)
set -euo pipefail

DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
APP_HOME="$DATA_HOME/clinicfusion-app"
MANIFEST="$APP_HOME/install-manifest.txt"
[ -f "$MANIFEST" ] || { echo "uninstall: ClinicFusion is not installed for $(id -un) ($MANIFEST is missing)." >&2; exit 1; }

value() { sed -n "s/^$1=//p" "$MANIFEST" | head -n 1; }
ENV_DIR=$(value env)
ENV_MANAGED=$(value env_managed)
DATA_DIR=$(value data_dir)
KEYS_DIR=$(value keys_dir)
VERSION=$(value version)

# Never delete a folder that holds a case database (a mistyped XDG_DATA_HOME, a moved data dir).
holds_data() { [ -n "$(find "$1" -maxdepth 3 -name 'clinicfusion.sqlite3*' -print -quit 2>/dev/null)" ]; }

while IFS= read -r file; do
    rm -f -- "$file"
done < <(sed -n 's/^file=//p' "$MANIFEST")

if [ "$ENV_MANAGED" = yes ] && [ -d "$ENV_DIR" ]; then
    if holds_data "$ENV_DIR"; then
        echo "uninstall: $ENV_DIR holds a case database; it was left in place." >&2
    else
        rm -rf -- "$ENV_DIR"
    fi
fi
rm -f -- "$MANIFEST" "$APP_HOME/uninstall.sh"
rmdir -- "$APP_HOME" 2>/dev/null || echo "uninstall: $APP_HOME has other files; it was left in place."

command -v update-desktop-database >/dev/null && update-desktop-database -q "$DATA_HOME/applications" 2>/dev/null || true

echo "Removed ${VERSION:-ClinicFusion} (the command, the menu entry, the icons and the app's venv)."
echo "Your data was kept:"
echo "  cases, logs, exports:  $DATA_DIR"
echo "  keys (audit, de-identification; needed to verify the audit trail and to read"
echo "  an encrypted database):  $KEYS_DIR"
echo "To delete them too, for good (back them up first if the records must be kept):"
echo "  rm -rf \"$DATA_DIR\" \"$KEYS_DIR\""
