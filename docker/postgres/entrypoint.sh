#!/bin/sh
# First start: make the cluster with the configured superuser and database. Every start:
# run postgres in the foreground, listening on the container's network, passwords required.
set -eu

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	password_file=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
	initdb --pgdata="$PGDATA" --username="$user" --pwfile="$password_file" \
		--encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$password_file"
	# initdb allows only loopback over TCP; the service connects from other containers.
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	if [ "$database" != postgres ]; then
		# Single-user mode: no server listens until the database exists.
		echo "CREATE DATABASE \"$database\"" | postgres --single -D "$PGDATA" postgres >/dev/null
	fi
	echo "postgres-entrypoint: made the cluster, superuser $user, database $database" >&2
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
