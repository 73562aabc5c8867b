#!/usr/bin/env bash
# Installs what the sign-in and browser tests need, if missing: Debian's chromium (headless,
# driven by Playwright from npm) and the npm packages of tests/oidc-provider (a real
# OpenID Connect provider) and tests/browser (playwright-core), from their lock files.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian chromium" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
fi
for dir in tests/oidc-provider tests/browser; do
    if [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules" ]; then
        echo "npm ci in $dir" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    fi
done
