#!/usr/bin/env bash
# `make fuzz [FUZZ_SECONDS=N]`: libFuzzer (with AddressSanitizer) on the safetensors reader, the zip reader
# and the restricted pickle machine, seeded with files written by the real torch and safetensors.
# The harnesses are compiled into the CheckpointFormats module with swiftc -sanitize=fuzzer,address,
# one binary; CKPTD_FUZZ_TARGET picks the harness.
# Prints executions and crashes per harness; exits 1 if any harness crashed (the crashing input is kept
# in .build-fuzz/crashes/).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-${FUZZ_SECONDS:-60}}
out=$here/.build-fuzz
mkdir -p "$out/crashes"
sources=("$here"/Sources/CheckpointFormats/*.swift "$here"/Sources/CheckpointFormats/Distributed/*.swift)
status=0
bin=$out/ckptd-fuzz
newest=$(ls -t "${sources[@]}" "$here"/Tests/fuzz/*.swift "$here/scripts/fuzz.sh" | head -1)
if [ ! -x "$bin" ] || [ "$newest" -nt "$bin" ]; then
  echo "fuzz: building $bin (swiftc -sanitize=fuzzer,address)"
  rm -f "$bin"
  # CheckpointFormats imports swift-system's SystemPackage: use the module and objects of the debug build
  # (`make build` runs first), linked uninstrumented beside the fuzzed code.
  debug=$here/.build/debug
  [ -d "$debug/SystemPackage.build" ] || { echo "fuzz: $debug/SystemPackage.build missing: run make build"; exit 1; }
  # Only SystemPackage: with swift-crypto's module visible StreamingSHA256 would want it linked too.
  rm -rf "$out/modules" && mkdir -p "$out/modules"
  cp -R "$debug/Modules/SystemPackage.swiftmodule" "$out/modules/"
  swiftc -O -sanitize=fuzzer,address -parse-as-library -swift-version 6 -module-name CheckpointFormats -package-name ckptd \
    -I "$here/Sources/CZlib" -I "$here/Sources/CLinux" -I "$out/modules" \
    -I "$here/.build/checkouts/swift-system/Sources/CSystem/include" \
    "${sources[@]}" "$here"/Tests/fuzz/*.swift "$debug"/SystemPackage.build/*.o "$debug"/CSystem.build/*.o \
    -lz -o "$bin" 2>&1 | grep -v 'Cannot export local symbol' || true
  [ -x "$bin" ] || { echo "fuzz: build of $bin failed"; exit 1; }
fi
for harness in Safetensors Zip Pickle Zero DCP; do
  lower=$(echo "$harness" | tr 'A-Z' 'a-z')
  corpus=$out/corpus-$lower
  mkdir -p "$corpus"
  log=$out/fuzz-$lower.log
  set +e
  CKPTD_FUZZ_TARGET=$lower ASAN_OPTIONS=detect_leaks=0 "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$out/crashes/$lower-" -print_final_stats=1 \
    "$corpus" "$here/Tests/fuzz/seeds/$lower" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  if [ $rc -ne 0 ]; then
    echo "fuzz: $harness: CRASH after $execs executions (exit $rc); see $log and $out/crashes/"
    grep -E 'ERROR|SUMMARY|Fatal' "$log" | head -5
    status=1
  else
    echo "fuzz: $harness: $execs executions in ${seconds}s, no crash (corpus $(ls "$corpus" | wc -l) inputs)"
  fi
done
exit $status
