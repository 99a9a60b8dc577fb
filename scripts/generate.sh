#!/usr/bin/env bash
# Generates src/gen/ from proto/ with protoc (Debian's protobuf-compiler, which
# also brings the well-known types) and protoc-gen-es from node_modules.
# With --check, generates into a temp dir and fails when src/gen differs, so a
# proto change without regenerated code cannot land.
set -euo pipefail
cd "$(dirname "$0")/.."
out=src/gen
if [ "${1:-}" = "--check" ]; then out=$(mktemp -d); fi
files=$(cd proto && find . -name '*.proto' | sed 's#^\./##' | sort)
protoc --plugin=protoc-gen-es=node_modules/.bin/protoc-gen-es \
  --es_out="$out" --es_opt=target=ts,import_extension=ts -I proto $files
if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$out" src/gen >/dev/null; then
    echo "src/gen is out of date with proto/: run npm run generate" >&2
    diff -r "$out" src/gen | head -20 >&2
    rm -rf "$out"
    exit 1
  fi
  rm -rf "$out"
fi
