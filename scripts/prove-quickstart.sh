#!/usr/bin/env bash
# Proves README.md's "Quick start" the way a new user meets it: a fresh
# `git clone` of this repository's HEAD, a clean environment (env -i, an
# empty HOME, PATH=/usr/bin:/bin, so /usr/bin/python3 is the only Python)
# and each of the section's two commands run verbatim, as README shows them.
# Then, from a directory outside the clone, `pytest --mailspec` with what
# the first command installed (README, "pytest without a checkout").
#
# Usage: scripts/prove-quickstart.sh [--first-only]   (CI: .ci/run runs it)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
first_only=0
[ "${1:-}" = "--first-only" ] && first_only=1

# The shell commands of the Quick start's code block: its non-comment lines.
mapfile -t commands < <(awk '
  /^## / { in_section = ($0 ~ /^## Quick start/) ; next }
  in_section && /^```/ { fence = !fence; next }
  in_section && fence && $0 !~ /^[[:space:]]*(#|$)/ { print }
' "$repo/README.md")
if [ ${#commands[@]} -ne 2 ]; then
  echo "prove-quickstart: README's Quick start has ${#commands[@]} commands, expected 2" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/home" "$work/elsewhere"
git clone -q "$repo" "$work/clone"

clean() {  # clean DIR COMMAND: run COMMAND with bash in DIR, nothing inherited
  (cd "$1" && env -i PATH=/usr/bin:/bin HOME="$work/home" LANG=C.UTF-8 bash -c "$2")
}

step() { printf '\n== prove-quickstart: %s\n' "$*"; }

step "1/3 ${commands[0]}"
clean "$work/clone" "${commands[0]}"
size=$(du -cb "$work/clone/reports/junit.xml" "$work/clone/reports/results.json" \
  "$work/clone/reports/report.html" | tail -n 1 | cut -f1)
echo "reports of the passing run: $size octets"
if [ "$size" -gt 2000000 ]; then  # 2 MB (decimal), as README promises
  echo "prove-quickstart: a passing run wrote more than 2 MB of reports" >&2
  exit 1
fi

step "2/3 pytest --mailspec from outside the clone"
clean "$work/elsewhere" "$work/clone/.venv/bin/pytest --mailspec -q -p no:cacheprovider"

if [ $first_only -eq 1 ]; then
  exit 0
fi
step "3/3 ${commands[1]}"
clean "$work/clone" "${commands[1]}"
echo "prove-quickstart: both README commands passed in a clean environment"
