#!/usr/bin/env bash
# Checks the gradients of a list of formulas with tapegrad-check, as a CI step would:
# one check per line of the file ("EXPR ; NAME=VALUE ..."), the summary line
# "N passed, M failed", and the program's exit status: 0 when every check passes, 1
# when a gradient check fails, 2 when a line cannot be checked (a parse error, a value
# or shape the library rejects).
#
# Usage: scripts/check_formulas.sh [FILE] [tapegrad-check options...]
#   FILE  default scripts/formulas.txt; options such as --seed 3 or --fast pass through.
# The program is $TAPEGRAD_CHECK when set, else tapegrad-check from PATH, else one built
# here with the release preset.
set -euo pipefail
cd "$(dirname "$0")/.."
file=${1:-scripts/formulas.txt}
shift || true
if [[ -n "${TAPEGRAD_CHECK:-}" ]]; then
    prog=$TAPEGRAD_CHECK
elif command -v tapegrad-check >/dev/null; then
    prog=tapegrad-check
else
    cmake --preset release >/dev/null
    cmake --build --preset release -j2 --target tapegrad-check >/dev/null
    prog=build/release/tools/tapegrad-check/tapegrad-check
fi
status=0
"$prog" "$@" --file "$file" || status=$?
case $status in
0) echo "check_formulas: every formula in $file passed" ;;
1) echo "check_formulas: a gradient check failed (see above)" >&2 ;;
*) echo "check_formulas: a formula in $file could not be checked (see above)" >&2 ;;
esac
exit $status
