#!/usr/bin/env bash
# The AsyncAPI project's own parser (@asyncapi/parser, pinned by package-lock.json), installed once from the npm
# registry into $OMS_STATE_DIR/tools/asyncapi with validate.mjs beside it; prints that directory.
# tests/unit/test_asyncapi.py runs `node <dir>/validate.mjs docs/asyncapi.json`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

HERE=$OMS_ROOT/deploy/asyncapi
DIR=$OMS_STATE_DIR/tools/asyncapi
need_command npm npm
if [ ! -d "$DIR/node_modules" ] || ! cmp -s "$HERE/package-lock.json" "$DIR/package-lock.json"; then
  mkdir -p "$DIR"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DIR/"
  log "installing @asyncapi/parser (npm ci)"
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
cp "$HERE/validate.mjs" "$DIR/"
echo "$DIR"
