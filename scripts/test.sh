#!/usr/bin/env bash
# The project's test command (`npm test`): installs the Debian test
# prerequisites when missing, checks that src/gen matches proto/, type-checks,
# lints and format-checks (Biome), runs the whole bun test suite, and ends with one line `N passed, N failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh || { echo "could not install test prerequisites"; echo "0 passed, 1 failed"; exit 1; }
BUN=node_modules/.bin/bun
if ! bash scripts/generate.sh --check; then
  echo "0 passed, 1 failed"
  exit 1
fi
if ! node_modules/.bin/tsc --noEmit -p .; then
  echo "typecheck failed"
  echo "0 passed, 1 failed"
  exit 1
fi
# Lint, including the import-cycle and floating-promise rules (biome.jsonc), and the
# formatter's check (`npm run format` fixes what it reports); about a second each.
if ! npm run -s lint; then
  echo "lint failed"
  echo "0 passed, 1 failed"
  exit 1
fi
if ! node_modules/.bin/biome format >/dev/null 2>&1; then
  node_modules/.bin/biome format 2>&1 | tail -20
  echo "format check failed: run npm run format"
  echo "0 passed, 1 failed"
  exit 1
fi
out=$(mktemp)
"$BUN" test --timeout 60000 "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
# bun prints " N pass" and " N fail" near the end of its summary.
passed=$(grep -E '^ *[0-9]+ pass$' "$out" | tail -1 | grep -oE '[0-9]+' || echo 0)
failed=$(grep -E '^ *[0-9]+ fail$' "$out" | tail -1 | grep -oE '[0-9]+' || echo 0)
rm -f "$out"
if [ "$status" -ne 0 ] && [ "${failed:-0}" -eq 0 ]; then failed=1; fi
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"
