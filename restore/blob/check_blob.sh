#!/bin/sh
# Refuses a restorer blob that would need relocating: it runs at an address chosen at restore
# time and nothing patches it, so every reference must be PC-relative. An absolute or GOT
# relocation in an object, or any section other than .text in the linked image, fails the build.
# usage: check_blob.sh BLOB.elf OBJ...
set -eu
elf=$1; shift
bad=0
for o in "$@"; do
    if readelf -rW "$o" | grep -E 'R_X86_64_(64|32|32S|GOT[A-Z0-9_]*|COPY|RELATIVE)[[:space:]]' >&2; then
        echo "check_blob: $o has relocations that need the load address" >&2
        bad=1
    fi
done
if [ -n "$(readelf -rW "$elf" | grep -E '^ *[0-9a-f]+ ' || true)" ]; then
    echo "check_blob: $elf has relocations" >&2
    bad=1
fi
sections=$(readelf -SW "$elf" | sed -n 's/^ *\[ *[0-9]*\] \([^ ]*\) .*/\1/p' | grep -vE '^(\.text|\.symtab|\.strtab|\.shstrtab|NULL)?$' || true)
if [ -n "$sections" ]; then
    echo "check_blob: $elf has sections besides .text: $sections" >&2
    bad=1
fi
exit $bad
