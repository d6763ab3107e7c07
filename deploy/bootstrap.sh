#!/usr/bin/env bash
# Creates (or refreshes) the project's virtualenv with the pinned packages. Idempotent and quick when nothing changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

VENV=${OMS_VENV:-$OMS_ROOT/.venv}
PYTHON=${OMS_PYTHON:-python3}
stamp=$VENV/.installed-$(cat "$OMS_ROOT/pyproject.toml" "$OMS_ROOT/requirements.lock" | md5sum | cut -c1-12)

[ -f "$stamp" ] && exit 0
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is needed ($PYTHON)"
[ -x "$VENV/bin/python" ] || { log "creating virtualenv in $VENV"; "$PYTHON" -m venv "$VENV"; }
log "installing Python packages (pinned in requirements.lock)"
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$OMS_ROOT/requirements.lock"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$OMS_ROOT"
rm -f "$VENV"/.installed-*
touch "$stamp"
