#!/bin/sh
# Entrypoint of the citus-xtask test image (built by citus-testkit::test_image).
#
# Behaves like the official postgres image for the variables the project's
# compose file uses:
#   POSTGRES_USER           superuser name (default: postgres)
#   POSTGRES_PASSWORD       superuser password, or
#   POSTGRES_PASSWORD_FILE  a file holding it; one of the two is required
#   POSTGRES_DB             database created on first start (default: the user)
#   PGDATA                  data directory (default: /var/lib/postgresql/data)
#   POSTGRES_INITDB_ARGS    more initdb options, split on blanks
# On an empty PGDATA it runs initdb as the official entrypoint does: without
# --auth, so the trust it leaves for connections from inside the container
# stays unless POSTGRES_INITDB_ARGS sets --auth-local/--auth-host (the
# project's compose file does); other hosts need scram-sha-256; it listens on
# all addresses. On a non-empty PGDATA it just starts. Arguments starting with '-' are options for postgres.
# The server is exec'd as the postgres OS user, so it is PID 1 and gets the
# container's signals. The password is never printed.
set -eu

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$#" -eq 0 ]; then
	set -- postgres
fi
case "$1" in
	-*) set -- postgres "$@" ;;
esac

# Anything but the server (a shell, psql, ...) runs as asked, untouched.
if [ "$1" != postgres ]; then
	exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
	as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
	own() { chown postgres:postgres "$@"; }
else
	as_postgres() { "$@"; }
	own() { :; }
fi

POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
	if [ -n "${POSTGRES_PASSWORD:-}" ]; then
		die "both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set; set only one of them"
	fi
	if [ ! -r "$POSTGRES_PASSWORD_FILE" ]; then
		die "POSTGRES_PASSWORD_FILE names $POSTGRES_PASSWORD_FILE, which is not a readable file"
	fi
	password="$(cat "$POSTGRES_PASSWORD_FILE")"
else
	password="${POSTGRES_PASSWORD:-}"
fi
if [ -z "$password" ]; then
	die "no superuser password: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (this image refuses to start without one)"
fi
unset POSTGRES_PASSWORD

# The socket directory of Debian's build, and the data directory.
mkdir -p /var/run/postgresql "$PGDATA"
own /var/run/postgresql
chmod 3777 /var/run/postgresql
if [ "$(id -u)" = 0 ]; then
	find "$PGDATA" ! -user postgres -exec chown postgres:postgres '{}' +
fi
chmod 0700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	log "initialising $PGDATA for superuser $POSTGRES_USER"
	pwfile="$(mktemp)"
	chmod 0600 "$pwfile"
	own "$pwfile"
	printf '%s\n' "$password" >"$pwfile"
	# shellcheck disable=SC2086 # split on blanks, as the official entrypoint's eval does
	if ! as_postgres initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}; then
		rm -f "$pwfile"
		die "initdb failed"
	fi
	rm -f "$pwfile"
	printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

	if [ "$POSTGRES_DB" != postgres ]; then
		log "creating database $POSTGRES_DB"
		sockdir="$(mktemp -d)"
		own "$sockdir"
		as_postgres pg_ctl -D "$PGDATA" -w -t 60 \
			-o "-c listen_addresses='' -c unix_socket_directories=$sockdir" start
		export PGPASSWORD="$password"
		as_postgres psql -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -U "$POSTGRES_USER" -d postgres \
			--set=db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db";
		EOSQL
		unset PGPASSWORD
		as_postgres pg_ctl -D "$PGDATA" -m fast -w -t 60 stop
		rmdir "$sockdir"
	fi
	log "initialisation done"
else
	log "$PGDATA already holds a cluster: starting it"
fi
unset password

if [ "$(id -u)" = 0 ]; then
	# The server's own libpq (Citus's connections to the other nodes) looks for client
	# certificates under $HOME/.postgresql: give it the postgres user's home, not root's.
	export HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
