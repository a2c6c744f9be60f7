#!/bin/sh
# Builds the images fuzz targets (GCC + ASan/UBSan + libFuzzer runtime, see
# test/fuzz/CMakeLists.txt) and runs each for N seconds (default 60), growing the
# corpus under test/fuzz/corpus/<target>. Crashes land in build-fuzz/crashes/.
#   scripts/fuzz-images.sh [seconds] [image_reader|page_reader|all]
set -eu
secs=${1:-60}
which=${2:-all}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
corpus=$root/test/fuzz/corpus

cmake -S "$root" -B "$build" -G Ninja -DCRIU_FUZZ=ON -DCMAKE_BUILD_TYPE=Asan >/dev/null
ninja -C "$build" -j2 fuzz_image_reader fuzz_page_reader fuzz_seeds

mkdir -p "$corpus/image_reader" "$corpus/page_reader" "$build/crashes"
if [ -z "$(ls -A "$corpus/image_reader")" ] || [ -z "$(ls -A "$corpus/page_reader")" ]; then
    "$build/bin/fuzz_seeds" "$corpus/image_reader" "$corpus/page_reader"
fi

status=0
for t in image_reader page_reader; do
    [ "$which" = all ] || [ "$which" = "$t" ] || continue
    echo "== fuzz_$t for ${secs}s"
    # max_len 64 KiB keeps the committed corpus small; rss limit catches unbounded allocations.
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
    "$build/bin/fuzz_$t" "$corpus/$t" -max_total_time="$secs" -max_len=65536 \
        -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$t-" 2>&1 | grep -v -E '^#[0-9]+\s+(pulse|REDUCE)' | tail -25 || status=1
done
# Keep the committed corpus small: merge each into a minimal set covering the same features.
for t in image_reader page_reader; do
    [ "$which" = all ] || [ "$which" = "$t" ] || continue
    min=$build/corpus-min-$t
    rm -rf "$min" && mkdir -p "$min"
    "$build/bin/fuzz_$t" -merge=1 -max_len=65536 "$min" "$corpus/$t" >/dev/null 2>&1 &&
        rm -rf "$corpus/$t" && mv "$min" "$corpus/$t"
done
echo "corpus: $(du -sh "$corpus" | cut -f1)"
exit $status
