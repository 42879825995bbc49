#!/usr/bin/env bash
# fuzz.sh SECONDS — runs each libFuzzer target for SECONDS over its seed corpus.
# `make test` runs a short smoke (FUZZ_SECONDS, default 5); `make fuzz SECONDS=3600` a long run.
# New inputs go to a scratch corpus, so the checked-in seeds stay small; a crash
# leaves its input in build-fuzz/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
for src in fuzz/fuzz_*.c; do
  t=$(basename "$src" .c); t=${t#fuzz_}
  bin=build-fuzz/fuzz_$t
  [[ -x $bin ]] || { echo "fuzz: $bin is missing (make build-fuzz/fuzz_jsonrpc)" >&2; exit 1; }
  work=build-fuzz/corpus-$t
  mkdir -p "$work"
  echo "fuzz: $t for ${secs}s"
  "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
         -artifact_prefix=build-fuzz/"$t"- -print_final_stats=1 "$work" $( [[ -d fuzz/corpus/$t ]] && echo "fuzz/corpus/$t" ) 2>build-fuzz/fuzz-$t.log \
    || { tail -n 60 build-fuzz/fuzz-$t.log; echo "fuzz: $t FAILED (input saved under build-fuzz/$t-*)" >&2; exit 1; }
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' build-fuzz/fuzz-$t.log | tr '\n' ' '; echo
done
