#!/usr/bin/env bash
# The whole test suite: starts a throw-away PostgreSQL server (scripts/pg-test-server.sh)
# for the PostgreSQL tests, runs `cargo test --workspace "$@"` (without arguments, then
# the backend-neutral integration tests once more with the servers on PostgreSQL), and
# stops the server again on every exit, also when tests fail; exits non-zero if any run
# failed.
# Arguments go to cargo; with a package (`bash scripts/test.sh -p warrant-store`) only that
# package is tested.
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium and the npm packages of the sign-in and browser tests.
bash scripts/browser-deps.sh

WARRANT_PG_DIR=$(mktemp -d /tmp/warrant-pg-test.XXXXXX)
export WARRANT_PG_DIR
cleanup() {
    bash scripts/pg-test-server.sh stop || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WARRANT_TEST_PG_URL=$(bash scripts/pg-test-server.sh start)
export WARRANT_TEST_PG_URL
echo "test PostgreSQL: $WARRANT_TEST_PG_URL" >&2

scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
        --) break ;;
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done

status=0
cargo test ${scope[@]+"${scope[@]}"} "$@" || status=$?

# The whole suite (no arguments) also runs the backend-neutral integration tests a second
# time with every server on PostgreSQL (one database per data directory): every capability
# must behave exactly as on SQLite.
if [ "$#" -eq 0 ]; then
    echo "--- integration tests again, every server on PostgreSQL ---" >&2
    WARRANT_IT_BACKEND=postgres cargo test -p warrant --test it -- e2e:: bad_input:: openapi:: killswitch:: oauth:: governance:: certification:: ||
        status=$?
fi
exit "$status"
