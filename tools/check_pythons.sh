#!/usr/bin/env bash
# Install the package with the README's command into a fresh virtual environment for every
# CPython the package claims (3.10 to 3.14) that this machine has, and run the smoke tests
# against each installation from outside the checkout. Prints one line per version and exits
# non-zero if any installation or smoke run failed.
#
#   bash tools/check_pythons.sh              # every CPython 3.10-3.14 found
#   bash tools/check_pythons.sh 3.10 3.13    # only these
#
# Interpreters are looked up as pythonX.Y on PATH, then in ~/.pyenv/versions/X.Y*/bin.
# PYRAFT_CHECK_EXTRA (default "test") names the extra to install; the logs of each version
# are kept in a temporary directory printed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(3.10 3.11 3.12 3.13 3.14)
extra=${PYRAFT_CHECK_EXTRA:-test}
logs=$(mktemp -d "${TMPDIR:-/tmp}/pyraft-pythons.XXXXXX")

find_python() {
  local version=$1 candidate
  candidate=$(command -v "python$version" 2>/dev/null) && "$candidate" -c '' 2>/dev/null \
    && { echo "$candidate"; return 0; }
  for candidate in "$HOME"/.pyenv/versions/"$version".*/bin/python"$version"; do
    [ -x "$candidate" ] && { echo "$candidate"; return 0; }
  done
  return 1
}

failed=0
results=()
for version in "${versions[@]}"; do
  if ! python=$(find_python "$version"); then
    results+=("$version  absent   (no python$version on PATH or in ~/.pyenv)")
    continue
  fi
  full=$("$python" -c 'import platform; print(platform.python_version())')
  venv="$logs/venv-$version"
  log="$logs/$version.log"
  started=$(date +%s)
  status=ok
  {
    echo "== $python ($full)"
    "$python" -m venv "$venv" &&
    "$venv/bin/python" -m pip install --quiet --upgrade pip &&
    echo "== pip install \".[$extra]\"" &&
    (cd "$root" && "$venv/bin/python" -m pip install --quiet ".[$extra]")
  } >"$log" 2>&1 || status="install failed"
  if [ "$status" = ok ]; then
    run="$logs/run-$version"
    mkdir -p "$run"
    cp "$root/tests/smoke/test_smoke.py" "$run/"
    printf '[pytest]\naddopts = -p no:cacheprovider -ra\nfilterwarnings = error\n' \
      >"$run/pytest.ini"
    (cd "$run" && env -u PYTHONPATH PYRAFT_SMOKE_INSTALLED=1 \
      "$venv/bin/python" -m pytest -q test_smoke.py) >>"$log" 2>&1 || status="smoke failed"
  fi
  if [ "$status" = ok ]; then
    # a TOML configuration (tomllib, or tomli on 3.10) and the server command's imports
    printf 'member_id = 1\nlisten = "127.0.0.1:7001"\n' >"$run/member.toml"
    (cd "$run" && env -u PYTHONPATH "$venv/bin/python" -c \
      'from pyraft.config import ClusterConfig; import pyraft.kv.http, sys
assert ClusterConfig.from_file(sys.argv[1]).member_id == 1' member.toml &&
      "$venv/bin/pyraft" node --help >/dev/null) >>"$log" 2>&1 || status="config/node failed"
  fi
  summary=$(grep -E '^[0-9]+ (passed|failed)|passed|failed' "$log" | tail -1)
  results+=("$version  $status  ($full, $(( $(date +%s) - started )) s; ${summary:-see $log})")
  [ "$status" = ok ] || failed=1
  rm -rf "$venv"
done

printf '%s\n' "${results[@]}"
echo "logs: $logs"
exit $failed
