#!/usr/bin/env bash
# Checks that the shared library exports only its public API: every dynamic symbol that
# libtapegrad.so defines must be a tg_ name that the headers in include/ declare, never
# an internal tg__ one, a tg_ helper the headers do not mention, or a name without the
# prefix. Prints the offending symbols and exits 1 if there is any.
#
#   scripts/check_exports.sh <build-dir | path/to/libtapegrad.so>
set -euo pipefail
if (($# != 1)); then
    echo "usage: scripts/check_exports.sh <build-dir | libtapegrad.so>" >&2
    exit 2
fi
lib=$1
if [[ -d $lib ]]; then lib=$lib/libtapegrad.so; fi
if [[ ! -e $lib ]]; then
    echo "check_exports: $lib not found (build the tapegrad target first)" >&2
    exit 2
fi
# nm -D --defined-only: "<address> <type> <name>"; the version node of a versioned
# library (type A) is not a symbol of the API.
syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }')
if [[ -z $syms ]]; then
    echo "check_exports: no dynamic symbols in $lib" >&2
    exit 1
fi
# The public names: every tg_ identifier the installed headers mention.
include=$(cd "$(dirname "$0")/../include" && pwd)
public=$(grep -rohE '\btg_[A-Za-z0-9_]+' "$include" | sort -u)
bad=$(comm -23 <(printf '%s\n' "$syms" | sort -u) <(printf '%s\n' "$public"))
total=$(printf '%s\n' "$syms" | wc -l)
if [[ -n $bad ]]; then
    nbad=$(printf '%s\n' "$bad" | wc -l)
    echo "check_exports: $lib exports $nbad of $total symbols outside the public tg_ API:"
    printf '%s\n' "$bad" | sed 's/^/  /'
    exit 1
fi
echo "check_exports: $lib exports $total symbols, all public tg_ names"
