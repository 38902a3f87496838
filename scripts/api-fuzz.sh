#!/usr/bin/env bash
# API fuzzing from the served OpenAPI document, with schemathesis.
#
# Builds and starts `seatgate serve` on a free port with its own MySQL database
# (sg_fuzz_<random>) and Redis namespace, creates and warms events (and makes a
# booking) so fuzzed requests meet real data, then runs schemathesis against
# /openapi.json: every operation, generated bodies, headers and path values, three
# times: without credentials, with the admin token and a user JWT where the document
# asks for them, and with the admin token everywhere. About a minute per run. Fails (non-zero, loudly) on any finding: a 5xx, a status code or
# header the document does not name, a body or content type that does not match it,
# an error body that is not {"error": "<snake_case>", "message": "..."}.
# The server, its database and its Redis keys are removed on exit, whatever happens.
#
# Needs: cargo, python3 (venv), curl, redis-cli, the mariadb/mysql client, and Redis
# and MariaDB on 127.0.0.1 (as .ci/run makes sure of). Tunables (environment):
#   FUZZ_MAX_EXAMPLES  test cases per operation and phase (default 100)
#   FUZZ_TIMEOUT_SECS  hard cap on each schemathesis run (default 180)
#   FUZZ_SEED          schemathesis seed, to replay a run (default: random)
#   FUZZ_CHECKS        schemathesis checks (default: see `checks` below)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-100}
RUN_TIMEOUT=${FUZZ_TIMEOUT_SECS:-180}
VENV=target/api-fuzz/venv
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

say() { printf '\n[api-fuzz] %s\n' "$*"; }
die() { printf '\n[api-fuzz] FAILED: %s\n' "$*" >&2; exit 1; }

mysql_cli=$(command -v mariadb || command -v mysql || true)
[ -n "$mysql_cli" ] || die "no mariadb/mysql client"
command -v redis-cli >/dev/null || die "no redis-cli"
command -v curl >/dev/null || die "no curl"

# --- schemathesis, pinned, in a venv under target/ --------------------------------------
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "pip install schemathesis==$SCHEMATHESIS_VERSION"
fi

say "cargo build --bin seatgate"
cargo build --quiet --bin seatgate || die "cargo build"
bin=target/debug/seatgate

# --- A gateway of its own ----------------------------------------------------------------
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
suffix=$(rand_hex 4)
db_name="sg_fuzz_$suffix"
namespace="sgfuzz$suffix:"
admin_token=$(rand_hex 16)
jwt_secret=$(rand_hex 32)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
work=$(mktemp -d "${TMPDIR:-/tmp}/api-fuzz.XXXXXX")
log="$work/seatgate.log"
server_pid=

# Deletes the namespace's keys, one SCAN batch per script call (so the shared Redis is
# never blocked for long). In Lua because fuzzed ids put quotes, spaces and newlines in
# key names, which no shell pipe of key names survives.
delete_redis_keys() {
  local cursor=0
  local script="local r = redis.call('SCAN', ARGV[2], 'MATCH', ARGV[1], 'COUNT', 1000)
for _, key in ipairs(r[2]) do redis.call('UNLINK', key) end
return r[1]"
  for _ in $(seq 1 100000); do
    cursor=$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" EVAL "$script" 0 "$namespace*" "$cursor") || return 1
    [ "$cursor" = 0 ] && return 0
  done
  return 1
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  "$mysql_cli" -h 127.0.0.1 -P 3306 -uroot -e "DROP DATABASE IF EXISTS \`$db_name\`" \
    || printf '[api-fuzz] WARNING: could not drop database %s\n' "$db_name" >&2
  delete_redis_keys \
    || printf '[api-fuzz] WARNING: could not delete Redis keys %s*\n' "$namespace" >&2
  if [ "$rc" -ne 0 ]; then
    printf '\n[api-fuzz] FAILED (exit %s). Last lines of the gateway log (%s):\n' "$rc" "$log" >&2
    tail -n 40 "$log" >&2 2>/dev/null
    printf '[api-fuzz] schemathesis reports: %s\n' "$work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting seatgate on $base (database $db_name, Redis namespace $namespace)"
SEATGATE_HTTP_ADDR="127.0.0.1:$port" \
SEATGATE_DATABASE_URL="mysql://root@127.0.0.1:3306/$db_name" \
SEATGATE_REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" \
SEATGATE_REDIS_NAMESPACE="$namespace" \
SEATGATE_ADMIN_TOKEN="$admin_token" \
SEATGATE_JWT_SECRET="$jwt_secret" \
SEATGATE_USER_RATE=0 \
RUST_LOG="${RUST_LOG:-warn}" \
  "$bin" serve >"$log" 2>&1 &
server_pid=$!

for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || die "seatgate exited at start"
  sleep 0.5
done
curl -fsS -o /dev/null "$base/readyz" || die "seatgate is not ready after 60 s"

# --- Real data for the fuzzed paths to meet ------------------------------------------------
admin() { # METHOD PATH [BODY]: the admin API; fails on a non-2xx answer
  curl -fsS -X "$1" -H "Authorization: Bearer $admin_token" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "$base$2"
}
seats_json=$(python3 -c 'import json; print(json.dumps([f"{r}{n}" for r in "ABCDEFGH" for n in range(1, 26)]))')
admin POST /v1/admin/events "{\"id\":\"fuzz-on-sale\",\"name\":\"Fuzz on sale\",\"seats\":$seats_json,\"per_user_limit\":100}" >/dev/null \
  || die "cannot create event fuzz-on-sale"
admin POST /v1/admin/events/fuzz-on-sale/warm >/dev/null || die "cannot warm fuzz-on-sale"
admin POST /v1/admin/events '{"id":"fuzz-not-warmed","name":"Fuzz not warmed","seats":["A1","A2"]}' >/dev/null \
  || die "cannot create event fuzz-not-warmed"
user_jwt=$(SEATGATE_JWT_SECRET="$jwt_secret" "$bin" token --user fuzz --ttl 3600) || die "seatgate token"
booking=$(curl -fsS -X POST -H "Authorization: Bearer $user_jwt" -H 'Content-Type: application/json' \
  --data '{"seats":["A1","A2"]}' "$base/v1/events/fuzz-on-sale/bookings") || die "cannot claim seats"
booking_id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["booking_id"])' "$booking")
say "events fuzz-on-sale (warmed, booking $booking_id) and fuzz-not-warmed are ready"

# --- schemathesis --------------------------------------------------------------------------
# Checks on every response: no 5xx; status codes, headers, content types and bodies as
# documented; schema-violating requests refused with a 4xx; a missing required header
# refused; undocumented methods answered 405; operations that need a token refuse
# requests without one; and (scripts/api_fuzz_hooks.py) every error, documented or
# not, is JSON {"error": "<snake_case>", "message": "..."}. Not positive_data_acceptance:
# a schema-valid claim is refused by the business rules (unknown seats, sold out) by
# design. FUZZ_CHECKS overrides the list.
checks=${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,ignored_auth,error_body_shape}
seed=${FUZZ_SEED:-$RANDOM}

# Path values: generated, and half of the time one that names real data.
# The live stream never ends: read its first event (the snapshot) and hang up.
# No cache: it would be written into the working tree (.schemathesis/).
cat >"$work/data.toml" <<EOF
max-stream-events = 1

[cache]
enabled = false

[dictionaries.event_ids]
values = ["fuzz-on-sale", "fuzz-not-warmed"]

[dictionaries.booking_ids]
values = ["$booking_id"]

[parameters]
"path.id" = { dictionary = "event_ids", probability = 0.5 }
"path.booking_id" = { dictionary = "booking_ids", probability = 0.5 }
EOF
# Three runs: no credentials; each operation with the credential its document names
# (the admin token, or the user JWT where a user is meant); and the admin token
# everywhere (it reads and cancels any booking, and is refused for claims). The tokens
# reach schemathesis through the environment, never its command line.
cp "$work/data.toml" "$work/unauthenticated.toml"
cat "$work/data.toml" - >"$work/authenticated.toml" <<'EOF'

[auth.openapi.admin_token]
bearer = "${FUZZ_ADMIN_TOKEN}"

[auth.openapi.user_jwt]
bearer = "${FUZZ_USER_JWT}"
EOF
cat "$work/data.toml" - >"$work/admin-everywhere.toml" <<'EOF'

[auth.openapi.admin_token]
bearer = "${FUZZ_ADMIN_TOKEN}"

[auth.openapi.user_jwt]
bearer = "${FUZZ_ADMIN_TOKEN}"
EOF

# One worker: hypothesis describes its strategies with ast.parse, which CPython 3.11
# before 3.11.8 breaks under threads ("AST constructor recursion depth mismatch").
run_schemathesis() { # NAME CONFIG
  local name=$1 config=$2
  say "schemathesis ($name): checks $checks, $MAX_EXAMPLES examples per operation, seed $seed"
  local started=$SECONDS
  if ! FUZZ_ADMIN_TOKEN="$admin_token" FUZZ_USER_JWT="$user_jwt" \
    SCHEMATHESIS_HOOKS=api_fuzz_hooks PYTHONPATH=scripts \
    timeout --kill-after=10 "$RUN_TIMEOUT" \
    "$VENV/bin/schemathesis" --config-file "$config" run "$base/openapi.json" \
      --checks "$checks" \
      --max-examples "$MAX_EXAMPLES" \
      --seed "$seed" \
      --workers 1 \
      --request-timeout 10 \
      --generation-database none \
      --suppress-health-check too_slow,filter_too_much \
      --report junit --report-dir "$work/$name" \
      --no-color; then
    printf '\n[api-fuzz] schemathesis (%s) FAILED after %ss: findings above (or it ran over %ss)\n' \
      "$name" "$((SECONDS - started))" "$RUN_TIMEOUT" >&2
    failed+=("$name")
    return
  fi
  say "schemathesis ($name) passed in $((SECONDS - started))s"
}
failed=()

run_schemathesis unauthenticated "$work/unauthenticated.toml"
run_schemathesis authenticated "$work/authenticated.toml"
run_schemathesis admin-everywhere "$work/admin-everywhere.toml"

kill -0 "$server_pid" 2>/dev/null || die "seatgate died during the fuzzing"
[ ${#failed[@]} -eq 0 ] || die "schemathesis found problems in: ${failed[*]} (replay with FUZZ_SEED=$seed)"
say "all green"
