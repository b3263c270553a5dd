#!/usr/bin/env bash
# What one single-row statement's capture costs, in CPU instructions (callgrind), item by item.
#
# Instruction counts, not tps: they do not move with the machine's load, so variants can be
# compared on a shared machine. Each variant is a throwaway cluster migrated with this
# repository's migrations, a table shaped like pgbench_accounts tracked by the package and owned
# by an application role, then a variant's SQL (run as the superuser) changing one thing. The
# server is stopped and a single-user backend (postgres --single) runs, under callgrind, N
# transactions of: set the context (audit.set_checked_context, as the Node and Rust layers do),
# a one-row INSERT, a one-row UPDATE, all as the application role. Run twice (N1 and N2
# transactions), the difference divided by N2 - N1 is the cost of one transaction without the
# backend's start-up and first-call costs; minus the untracked variant's, it is capture's.
#
# Usage: scripts/capture-cost.sh [VARIANT...]   (default: every variant in scripts/capture-cost/)
#   A variant is a file scripts/capture-cost/NAME.sql, or "untracked" (tracking never enabled).
#   Environment: UNTIL=N migrates only up to VN (e.g. UNTIL=4: capture owned by the migrating
#   superuser, as before V5); N1, N2 (default 40, 240); PGBIN (default the PostgreSQL 15 binaries);
#   STATEMENTS=insert or update runs only that statement in each transaction (default: pair);
#   CONTEXT=inline sets the context with set_checked_context's expression as the statement itself;
#   KEEP=DIR keeps each variant's callgrind profiles of the N1 and N2 runs (NAME.n1.callgrind and
#   NAME.callgrind; callgrind_annotate --inclusive=yes): their difference is N2 - N1 transactions
#   without the start-up (scripts/callgrind-diff.py). DIR writable by the user the server runs as.
# Output: one line per variant: instructions per transaction (INSERT + UPDATE pair) and more than
# untracked. Counts are deterministic for a given PostgreSQL build, N1, N2 and month (±0.1%).
# Variants may use :'partition' (this month's partition of the log); those that rewrite the
# generated capture function (_rewrite.sql) fail loudly when the text they change is not there.
# Needs valgrind and the PostgreSQL server binaries (initdb, pg_ctl, postgres) and psql.
set -euo pipefail

# initdb refuses root: run as the postgres OS user instead (the environment is kept).
if [ "$(id -u)" = 0 ]; then
  self=$(readlink -f "$0")
  cd /
  exec runuser -u postgres -- "$self" "$@"
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
N1=${N1:-40}
N2=${N2:-240}
UNTIL=${UNTIL:-}
STATEMENTS=${STATEMENTS:-pair}
case "$STATEMENTS" in pair | insert | update) ;; *) echo "STATEMENTS must be pair, insert or update" >&2; exit 2 ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/capture-cost.XXXXXX")
trap 'if [ -f "$work/template/postmaster.pid" ]; then "$PGBIN/pg_ctl" -D "$work/template" -m immediate stop >/dev/null 2>&1 || true; fi; rm -rf "$work"' EXIT

variants=("$@")
if [ ${#variants[@]} -eq 0 ]; then
  variants=(untracked)
  for f in "$here"/capture-cost/[a-z]*.sql; do variants+=("$(basename "$f" .sql)"); done
fi

# The template: migrated, a tracked table with 10,000 rows, owned by the application role.
"$PGBIN/initdb" -D "$work/template" -U postgres -A trust --no-sync >/dev/null
cat >>"$work/template/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work'
fsync = off
synchronous_commit = off
shared_buffers = 64MB
autovacuum = off
EOF
"$PGBIN/pg_ctl" -D "$work/template" -l "$work/server.log" -w start >/dev/null
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$work" -U postgres "$@"; }
psql_ -d postgres -c 'create database bench' >/dev/null
# In version order: the glob would run V10 before V2.
mapfile -t migrations < <(printf '%s\n' "$root"/migrations/V*__*.sql | sort -V)
for m in "${migrations[@]}"; do
  version=$(basename "$m" | sed -E 's/^V([0-9]+)__.*/\1/')
  if [ -n "$UNTIL" ] && [ "$version" -gt "$UNTIL" ]; then continue; fi
  psql_ -d bench -1 -f "$m" >/dev/null 2>"$work/migrate.err" || { cat "$work/migrate.err"; exit 1; }
done
psql_ -d bench >/dev/null <<'EOF'
create role app login;
create table public.accounts (id int primary key, bid int, abalance int, filler char(84));
insert into public.accounts select g, 1, 0, '' from generate_series(1, 10000) g;
alter table public.accounts owner to app;
analyze public.accounts;
EOF
"$PGBIN/pg_ctl" -D "$work/template" -w stop >/dev/null

# The workload: ids above the table's, so each INSERT adds a row and its UPDATE changes it.
workload() {
  local n=$1
  echo "set role app"
  for i in $(seq 1 "$n"); do
    local id=$((20000 + i))
    echo "begin"
    local context="{\"actor_id\":\"user-$i\",\"actor_type\":\"user\",\"ip_address\":\"10.0.0.1\",\"request_id\":\"req-$i\"}"
    # The per-row trigger copied from a blog post reads its own setting: every variant sets it too, as the bench does.
    local user="set_config('app.current_user', '{\"user_id\":\"user-$i\",\"ip_address\":\"10.0.0.1\"}', true)"
    if [ -n "$UNTIL" ] && [ "$UNTIL" -lt 5 ]; then
      # Before V5 there was no set_checked_context, and capture read the setting as it was.
      echo "select set_config('audit.context', '$context', true), $user"
    elif [ "${CONTEXT:-}" = inline ]; then
      # What set_checked_context does, sent as the statement itself (no SQL function to inline).
      echo "select pg_catalog.set_config('audit.context_marker', pg_catalog.to_jsonb(pg_catalog.now())::pg_catalog.text operator(pg_catalog.||) '$context', true), pg_catalog.set_config('audit.context', '$context', true), $user"
    else
      echo "select audit.set_checked_context('$context'), $user"
    fi
    if [ "$STATEMENTS" != update ]; then
      echo "insert into accounts (id, bid, abalance, filler) values ($id, 1, $i, '')"
    fi
    if [ "$STATEMENTS" = update ]; then
      echo "update accounts set abalance = abalance + 1 where id = $i" # a row of the table's
    elif [ "$STATEMENTS" = pair ]; then
      echo "update accounts set abalance = abalance + 1 where id = $id"
    fi
    echo "commit"
  done
}
workload "$N1" >"$work/w1.sql"
workload "$N2" >"$work/w2.sql"

instructions() { # data directory, workload file
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
    "$PGBIN/postgres" --single -D "$1" -c autovacuum=off bench <"$2" >"$work/single.out" 2>"$work/single.err"
  if grep -q 'ERROR' "$work/single.out" "$work/single.err"; then
    grep 'ERROR' "$work/single.out" "$work/single.err" | head -3 >&2
    exit 1
  fi
  sed -nE 's/^==[0-9]+== Collected : ([0-9]+)$/\1/p' "$work/single.err"
}

partition=$(date -u +audit_logs_p%Y_%m)
baseline=
printf '%-28s %14s %14s\n' variant 'Ir/transaction' 'over untracked'
for variant in "${variants[@]}"; do
  rm -rf "$work/run"
  cp -a "$work/template" "$work/run"
  "$PGBIN/pg_ctl" -D "$work/run" -l "$work/run.log" -w start >/dev/null
  if [ "$variant" != untracked ]; then
    psql_ -d bench -c "select audit.enable_tracking('public.accounts')" >/dev/null
    psql_ -d bench -v partition="$partition" -f "$here/capture-cost/$variant.sql" >/dev/null
  fi
  psql_ -d bench -c 'checkpoint' >/dev/null
  "$PGBIN/pg_ctl" -D "$work/run" -w stop >/dev/null
  cp -a "$work/run" "$work/run2"
  a=$(instructions "$work/run" "$work/w1.sql")
  if [ -n "${KEEP:-}" ]; then cp "$work/callgrind.out" "$KEEP/$variant.n1.callgrind"; fi
  b=$(instructions "$work/run2" "$work/w2.sql")
  rm -rf "$work/run2"
  if [ -n "${KEEP:-}" ]; then cp "$work/callgrind.out" "$KEEP/$variant.callgrind"; fi
  per=$(( (b - a) / (N2 - N1) ))
  if [ "$variant" = untracked ]; then baseline=$per; fi
  printf '%-28s %14d %14s\n' "$variant" "$per" "${baseline:+$((per - baseline))}"
done
