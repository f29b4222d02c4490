#!/usr/bin/env bash
# Tools the benchmarks compare against: rsync and restic (Debian packages), when root.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench/setup.sh: not root; rsync/restic rows will say they are missing"; exit 0; }
need=()
command -v rsync >/dev/null || need+=(rsync)
command -v restic >/dev/null || need+=(restic)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
