#!/usr/bin/env bash
# Debian packages the test suite uses. Installed only when running as root and missing;
# without root the suites that need them are skipped with a message.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "system-deps: not root, skipping Debian packages"; exit 0; }
need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
