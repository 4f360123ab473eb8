#!/usr/bin/env bash
# Instructions per command on a fixed exchange-core-mix replay, counted by callgrind.
#
#   benches/callgrind.sh [COMMANDS] [SEED]        (defaults: 1000000 1)
#
# Builds keel-callgrind-replay in release, runs it under callgrind with collection switched
# on only inside `replay_measured` (so generation and warm-up are not counted), and prints
# Ir / commands. Instruction counts do not depend on machine load, so this is the figure to
# compare between commits. The raw profile is left in target/callgrind/ for
# callgrind_annotate; its top functions (inclusive) are printed at the end.
set -euo pipefail

commands="${1:-1000000}"
seed="${2:-1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 1; }

cargo build --release -p keel-benches --bin keel-callgrind-replay
binary="target/release/keel-callgrind-replay"
out_dir="target/callgrind"
mkdir -p "$out_dir"
out="$out_dir/callgrind.out.seed${seed}.n${commands}"

# The toggle pattern matches both the mangled and the demangled name of the function.
valgrind --tool=callgrind --toggle-collect='*replay_measured*' \
    --callgrind-out-file="$out" "$binary" --commands "$commands" --seed "$seed" \
    2> "$out_dir/valgrind.log" | tee "$out_dir/replay.out"

ir="$(awk '/^summary:/ { print $2 }' "$out")"
measured="$(awk '{ for (i = 1; i < NF; i++) if ($i == "commands") print $(i + 1) }' "$out_dir/replay.out")"
if [[ -z "$ir" || -z "$measured" || "$ir" == 0 ]]; then
    echo "callgrind.sh: no instructions collected; did the toggle pattern match?" >&2
    exit 1
fi
echo "instructions (Ir) inside replay_measured: $ir"
echo "commands: $measured"
awk -v ir="$ir" -v n="$measured" 'BEGIN { printf "instructions per command: %.1f\n", ir / n }'
echo
echo "top functions, inclusive Ir (callgrind_annotate --inclusive=yes $out;"
echo "functions only, without the per-source-file lines of inlined code):"
callgrind_annotate --inclusive=yes "$out" 2>/dev/null \
    | grep -E '^ *[0-9,]+ \(' \
    | grep 'keel-callgrind-replay\]' \
    | grep -vE '::main |\(below main\)|backtrace|\?\?\?:main' \
    | head -15
