#!/usr/bin/env bash
# Regenerates the hash-pinned lock files from setup.cfg with pip-compile:
#   scripts/lock/main.txt  core install + the `eval` extra
#   scripts/lock/test.txt  core install + the `test` extra (torch CPU build, libtpu, pytest, ...)
# Run it from anywhere after changing setup.cfg's dependencies (pins already in the
# files are kept where they still fit), or as `bash scripts/lock.sh --upgrade`
# (or `--upgrade-package NAME`) to move to newer versions; arguments go to pip-compile.
# Resolves for the machine it runs on: run it on Linux x86_64 with CPython 3.11.
# Install from a lock: pip install -r scripts/lock/main.txt && pip install --no-deps -e .
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), "needs CPython 3.11"'
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools" && "$tools/bin/pip" install -q pip-tools
for lock in main:eval test:test; do
  name=${lock%%:*} extra=${lock#*:} out=scripts/lock/${lock%%:*}.txt
  cmd=(pip-compile --generate-hashes --allow-unsafe --strip-extras --no-header
       --no-emit-index-url --no-emit-find-links --extra "$extra" -o "$out" setup.cfg "$@")
  "$tools/bin/${cmd[0]}" --quiet "${cmd[@]:1}"
  { echo "# Lock file for dft_jax: the core install + the \`$extra\` extra, every package"
    echo "# pinned == with its sha256 hashes (pip --require-hashes). It is the environment of"
    echo "# the committed results. Platform: Linux x86_64, CPython 3.11. Made on $(date -u +%F)"
    echo "# by scripts/lock.sh (rerun it to regenerate), from the repository root:"
    echo "#   ${cmd[*]}"
    echo "# Install: pip install -r $out && pip install --no-deps -e ."
    [ "$name" = test ] && echo "# torch==2.13.0+cpu is the CPU build (no nvidia-* packages); its hash is that of
# the local wheel torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl that pip
# finds through this machine's find-links (pip config); elsewhere give pip the
# PyTorch CPU wheel index with --extra-index-url."
    echo "#"
    cat "$out"; } > "$out.new"
  mv "$out.new" "$out"
done
