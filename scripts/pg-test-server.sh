#!/usr/bin/env bash
# A throw-away PostgreSQL server for the database tests (Debian/Ubuntu packages).
#
#   scripts/pg-test-server.sh start [DIR]   start one; prints its URL on stdout (the only line there);
#                                           DIR (default: a new folder under /tmp) holds the cluster
#   scripts/pg-test-server.sh stop DIR      stop it and delete DIR
#
# Typical use:
#   dir=$(mktemp -d /tmp/l2a-pg.XXXXXX)
#   export L2A_TEST_POSTGRES_URL=$(scripts/pg-test-server.sh start "$dir")
#   pytest tests/test_db*.py
#   scripts/pg-test-server.sh stop "$dir"
#
# Installs Debian's `postgresql` when no server binaries are found (root or sudo needed).
# The server listens on 127.0.0.1 only, on a free port, trusts local connections (user
# `postgres`, no password) and runs with fsync off: for tests only, never for data.
set -euo pipefail

die() { echo "pg-test-server: $*" >&2; exit 1; }

find_bindir() {
    local d
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    return 1
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is unavailable: install it (server binaries pg_ctl, initdb)"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "pg-test-server: installing Debian's postgresql" >&2
    $sudo apt-get install -y -qq postgresql >/dev/null 2>&1 || {
        $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq postgresql >/dev/null
    } || die "apt-get install postgresql failed"
}

# Run a command as the cluster's owner: postgres refuses to run as root.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

start() {
    local dir="${1:-}"
    local bindir
    bindir=$(find_bindir) || { install_postgres; bindir=$(find_bindir) || die "no pg_ctl after installing postgresql"; }
    if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/l2a-pg.XXXXXX); fi
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "user 'postgres' is missing (it comes with Debian's postgresql package)"
        chown postgres: "$dir"
        chmod 700 "$dir"
    fi
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
        --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    local port tries=0
    while :; do
        port=$(free_port)
        if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
            start >/dev/null 2>&1; then
            break
        fi
        tries=$((tries + 1))
        [ $tries -ge 3 ] && { tail -20 "$dir/server.log" >&2 || true; die "the server did not start"; }
    done
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres l2a_test || die "createdb failed"
    echo "$port" >"$dir/port"
    echo "pg-test-server: running in $dir (stop: $0 stop $dir)" >&2
    echo "postgresql://postgres@127.0.0.1:$port/l2a_test"
}

stop() {
    local dir="${1:?usage: $0 stop DIR}"
    [ -d "$dir/data" ] || die "no cluster in $dir"
    local bindir
    bindir=$(find_bindir) || die "pg_ctl not found"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case "${1:-start}" in
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *) die "usage: $0 start [DIR] | stop DIR" ;;
esac
