#!/bin/sh
# Installs the build tree into a scratch prefix (cmake --install) and runs the installed
# tapegrad-check there; checks that its man page was installed too.
# Usage: install_test.sh BUILD_DIR PREFIX BINDIR MANDIR
set -eu
build=$1 prefix=$2 bindir=$3 mandir=$4
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
test -x "$prefix/$bindir/tapegrad-check" || { echo "no $prefix/$bindir/tapegrad-check"; exit 1; }
test -f "$prefix/$mandir/man1/tapegrad-check.1" || { echo "no man page"; exit 1; }
out=$("$prefix/$bindir/tapegrad-check" 'sin(x1) + x1*x2' x1=2 x2=5)
case $out in
*"gradcheck: passed"*) ;;
*) echo "the installed program did not pass: $out"; exit 1 ;;
esac
rm -rf "$prefix"
echo "installed and ran $prefix/$bindir/tapegrad-check"
