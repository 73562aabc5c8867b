#!/usr/bin/env bash
# A throw-away PostgreSQL 15 server for the test suite, on loopback only.
#
#   bash scripts/pg-test-server.sh start   # prints the server URL
#   bash scripts/pg-test-server.sh url     # prints it again
#   bash scripts/pg-test-server.sh stop    # stops the server and removes its directory
#   bash scripts/pg-test-server.sh halt    # stops the server (fast), keeps its directory,
#                                          # port and URL (to test a database outage)
#   bash scripts/pg-test-server.sh resume  # starts a halted server again from its kept
#                                          # directory on the same port; prints the URL
#
# The server lives in $WARRANT_PG_DIR (default /tmp/warrant-pg-test); give each concurrent
# user its own directory. It listens on a free port of 127.0.0.1 only, its unix socket is
# inside that directory, authentication is `trust` (loopback only), fsync stays on.
# Debian's postgresql-15 is used; it is installed with apt-get if missing. PostgreSQL
# refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail

PG_BIN=${WARRANT_PG_BIN:-/usr/lib/postgresql/15/bin}
DIR=${WARRANT_PG_DIR:-/tmp/warrant-pg-test}

die() {
    echo "pg-test-server: $*" >&2
    exit 1
}

# Runs a command as the server's owner (postgres when we are root).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ensure_binaries() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && return 0
    [ "$(id -u)" = 0 ] || die "$PG_BIN/initdb not found; install Debian's postgresql-15 (as root: apt-get install -y postgresql-15)"
    echo "pg-test-server: installing postgresql-15" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql-15 >&2
    [ -x "$PG_BIN/initdb" ] || die "postgresql-15 installed but $PG_BIN/initdb is missing"
}

# A port on 127.0.0.1 that nothing answers on now (pg_ctl start is retried if it is taken
# in between).
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

url() {
    [ -f "$DIR/url" ] || die "no test server in $DIR (run: $0 start)"
    cat "$DIR/url"
}

# The port of the server's URL (postgres://postgres@127.0.0.1:PORT/postgres).
url_port() {
    local u port
    u=$(url)
    port=${u##*:}
    port=${port%%/*}
    case "$port" in
        '' | *[!0-9]*) die "no port in $u" ;;
    esac
    echo "$port"
}

# Starts the server of $DIR/data on 127.0.0.1:$1 and waits until it accepts connections.
pg_start() {
    as_owner "$PG_BIN/pg_ctl" start -w -t 60 -D "$DIR/data" -l "$DIR/server.log" -o \
        "-c listen_addresses=127.0.0.1 -p $1 -c unix_socket_directories=$DIR/sock -c fsync=on -c max_connections=300" \
        >/dev/null 2>&1
}

running() {
    [ -f "$DIR/data/postmaster.pid" ] && as_owner "$PG_BIN/pg_ctl" status -D "$DIR/data" >/dev/null 2>&1
}

start() {
    ensure_binaries
    if [ -f "$DIR/url" ] && running; then
        url
        return 0
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres: "$DIR"
    chmod 700 "$DIR"
    as_owner "$PG_BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C >"$DIR/initdb.log" 2>&1 ||
        { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        if pg_start "$port"; then
            echo "postgres://postgres@127.0.0.1:$port/postgres" >"$DIR/url"
            url
            return 0
        fi
        echo "pg-test-server: start on port $port failed (attempt $attempt)" >&2
    done
    tail -n 20 "$DIR/server.log" >&2 || true
    die "the server did not start; log: $DIR/server.log"
}

stop() {
    if [ -d "$DIR/data" ]; then
        as_owner "$PG_BIN/pg_ctl" stop -D "$DIR/data" -m fast -w -t 60 >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
}

# Stops the server like a crash of the database would look to its clients (fast shutdown:
# sessions are terminated, open transactions roll back) but keeps everything to resume.
halt() {
    [ -f "$DIR/url" ] && [ -d "$DIR/data" ] || die "no test server in $DIR (run: $0 start)"
    if running; then
        as_owner "$PG_BIN/pg_ctl" stop -D "$DIR/data" -m fast -w -t 60 >/dev/null 2>&1 ||
            die "pg_ctl stop failed"
    fi
}

# Starts a halted server again, on the port of its URL (so clients reconnect to the same
# address). Fails if something else took that port meanwhile.
resume() {
    ensure_binaries
    [ -f "$DIR/url" ] && [ -d "$DIR/data" ] || die "no halted test server in $DIR (run: $0 start)"
    if ! running; then
        local port
        port=$(url_port)
        pg_start "$port" || {
            tail -n 20 "$DIR/server.log" >&2 || true
            die "the server did not start again on port $port; log: $DIR/server.log"
        }
    fi
    url
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    halt) halt ;;
    resume) resume ;;
    *) die "usage: $0 start|stop|url|halt|resume" ;;
esac
