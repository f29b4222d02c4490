#!/usr/bin/env bash
# Debian packages the test suite uses, installed when running as root and missing:
# chromium (web UI tests), Slurm + munge (Slurm executor tests), PostgreSQL server (metadata
# store tests). Without root, the suites that need them are skipped with a message saying why.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: not root, not installing Debian packages (browser/Slurm/PostgreSQL tests will be skipped)"
  exit 0
fi
need=()
command -v unshare >/dev/null && command -v setpriv >/dev/null || need+=(util-linux)
[ -x /usr/lib/chromium/chromium ] || need+=(chromium)
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || [ -x /usr/sbin/munged ] || need+=(munge)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "system-deps: installing ${need[*]}"
  # Keep package scripts from starting daemons: tests start exactly what they need.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
exit 0
