#!/usr/bin/env bash
# Runs the comparison harness (compare/: foldlog, SQLite, redb, fjall and the raw write()+fdatasync baseline),
# optionally a short criterion pass, and regenerates docs/benchmarks.md's tables and docs/plots/*.svg from
# the results (the harness's `report` subcommand; plotters draws the plots). The prose of docs/benchmarks.md
# (outside its "generated" markers) is left alone.
#
#   scripts/bench.sh              full comparison (1,000,000 events, 3 runs; about 10 minutes here),
#                                 writes docs/benchmarks.csv, docs/benchmarks.md, docs/plots/
#   scripts/bench.sh --quick      one short run (under a minute); writes into target/bench-quick/ instead,
#                                 so the committed figures are not replaced by a quick run's
#   scripts/bench.sh --criterion  also run the criterion suite briefly first (a few minutes more)
#   scripts/bench.sh --dcb        the DCB comparison instead (foldlog and SQLite, read-decide-append commands;
#                                 about 5 minutes, with --quick about 20 s): writes docs/benchmarks-dcb.csv
#                                 (with --quick target/bench-quick/) and rewrites only the document's dcb section
#   scripts/bench.sh --jetstream  the JetStream comparison instead (the Backend trait on embedded foldlog and on
#                                 nats-server at replicas 1 and 3, on loopback; about a minute, with --quick
#                                 about 20 s; the JetStream rows are skipped with the reason printed when
#                                 nats-server is missing): writes docs/benchmarks-jetstream.csv (with --quick
#                                 target/bench-quick/) and rewrites only the document's jetstream section
#
# Any other argument is passed to the harness (e.g. --events 300000, --engines foldlog,raw,sqlite).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
criterion=0
dcb=0
jetstream=0
harness_args=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=(--quick) ;;
        --criterion) criterion=1 ;;
        --dcb) dcb=1 ;;
        --jetstream) jetstream=1 ;;
        *) harness_args+=("$arg") ;;
    esac
done

if [[ ${#quick[@]} -gt 0 ]]; then
    out=target/bench-quick
    mkdir -p "$out"
    cp docs/benchmarks.md "$out/benchmarks.md"
    csv="$out/benchmarks.csv"
    doc="$out/benchmarks.md"
    plots="$out/plots"
else
    csv=docs/benchmarks.csv
    doc=docs/benchmarks.md
    plots=docs/plots
fi

if [[ $dcb -eq 1 ]]; then
    dcb_csv="${csv%benchmarks.csv}benchmarks-dcb.csv"
    cargo run --release --manifest-path compare/Cargo.toml -- --dcb "${quick[@]}" --csv "$dcb_csv" \
        "${harness_args[@]}"
    cargo run --release --quiet --manifest-path compare/Cargo.toml -- report --dcb-csv "$dcb_csv" --doc "$doc"
    echo "table: $doc (dcb section)"
    exit 0
fi

if [[ $jetstream -eq 1 ]]; then
    js_csv="${csv%benchmarks.csv}benchmarks-jetstream.csv"
    cargo run --release --manifest-path compare/Cargo.toml -- --jetstream "${quick[@]}" --csv "$js_csv" \
        "${harness_args[@]}"
    cargo run --release --quiet --manifest-path compare/Cargo.toml -- report --jetstream-csv "$js_csv" \
        --doc "$doc"
    echo "table: $doc (jetstream section)"
    exit 0
fi

if [[ $criterion -eq 1 ]]; then
    for bench in append streams replay recovery; do
        cargo bench --bench "$bench" -- --warm-up-time 1 --measurement-time 2
    done
fi

cargo run --release --manifest-path compare/Cargo.toml -- "${quick[@]}" --csv "$csv" "${harness_args[@]}"
cargo run --release --quiet --manifest-path compare/Cargo.toml -- report \
    --csv "$csv" --criterion target/criterion --doc "$doc" --plots "$plots"
echo "tables: $doc; plots: $plots/"
