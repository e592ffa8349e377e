#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests and local experiments, from the machine's packages.
#   scripts/throwaway_postgres.sh start DIR   -> initdb + pg_ctl start on a free local port;
#                                                prints the server's URI (postgresql://...)
#   scripts/throwaway_postgres.sh stop DIR    -> stop it (DIR can then be deleted)
# Trust authentication on 127.0.0.1 only; never use this for anything but throwaway data.
set -euo pipefail

action=${1:?usage: $0 start|stop DIR}
dir=$(realpath -m "${2:?usage: $0 start|stop DIR}")
bin=$(compgen -G "/usr/lib/postgresql/*/bin" | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
    echo "PostgreSQL binaries not found: install them with 'apt-get install postgresql'" >&2
    exit 2
fi

# initdb refuses to run as root: run the server as the packaged 'postgres' user then.
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "$action" in
start)
    mkdir -p "$dir"
    # The server's own folder must be reachable by its user, so it lives in /tmp; DIR records it.
    server=$(mktemp -d /tmp/mlops-postgres.XXXXXX)
    echo "$server" >"$dir/server_dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$server"
    port=$(free_port)
    if ! as_owner "$bin/initdb" --pgdata="$server/data" --username=mlops --auth=trust \
        --encoding=UTF8 --no-sync >"$server/initdb.log" 2>&1; then
        cat "$server/initdb.log" >&2
        exit 1
    fi
    # Durability off: throwaway data, and tests run faster.
    as_owner "$bin/pg_ctl" --pgdata="$server/data" --log="$server/server.log" --wait start \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$server
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off
            -c max_connections=300" >/dev/null 2>&1 || { cat "$server/server.log" >&2; exit 1; }
    echo "postgresql://mlops@127.0.0.1:$port/postgres"
    ;;
stop)
    server=$(cat "$dir/server_dir")
    as_owner "$bin/pg_ctl" --pgdata="$server/data" --mode=fast --wait stop >/dev/null
    rm -rf "$server"
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
