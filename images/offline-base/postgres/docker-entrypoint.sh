#!/bin/bash
# The upstream postgres image's start-up contract, for the offline stand-in image:
# on an empty PGDATA, initdb with POSTGRES_USER (superuser) and POSTGRES_PASSWORD, create POSTGRES_DB, run
# /docker-entrypoint-initdb.d/*.sh and *.sql against a server that listens on its socket only, stop it;
# then run the server in the foreground: TCP on every interface with password (scram) auth, local trust.
set -euo pipefail

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (the stand-in, like upstream, refuses an empty one)}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
SOCKETS=/var/run/postgresql

if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA" >/dev/null
    {
        echo "listen_addresses = '*'"
        echo "unix_socket_directories = '$SOCKETS'"
    } >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"

    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql=(psql -v ON_ERROR_STOP=1 --host "$SOCKETS" --username "$POSTGRES_USER" --no-password --dbname postgres)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" -v db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')\gexec
SQL
    fi
    export PGHOST="$SOCKETS"
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh) echo "running $script"; if [ -x "$script" ]; then "$script"; else . "$script"; fi ;;
            *.sql) echo "running $script"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$script" ;;
            *) [ -e "$script" ] && echo "ignoring $script" ;;
        esac
    done
    unset PGHOST
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
