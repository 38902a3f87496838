# Old-and-new gateway runs for the A/B scripts (storm.sh, connection_ab.sh): source it
# after setting
#   gw_name     a name for the run's stores, e.g. storm_$$ (databases <gw_name>_<label>,
#               Redis namespaces <gw_name with - for _>-<label>:)
#   mysql_base  mysql://user@host:port of the shared MySQL
#   redis_url   the shared Redis
#   out         where each gateway's log goes (serve-<label>.log)
# It exports fresh secrets, starts `seatgate serve` of a binary under a label
# (start_gateway BINARY LABEL PORT), stops it (stop_gateway), and on exit stops it and
# deletes the databases and namespaces of the labels old and new.

export SEATGATE_ADMIN_TOKEN=$(openssl rand -hex 16)
export SEATGATE_JWT_SECRET=$(openssl rand -hex 32)
export SEATGATE_REDIS_URL=$redis_url
export RUST_LOG=${RUST_LOG:-warn}
gateway_pid=

gateway_namespace() { printf '%s-%s:' "${gw_name//_/-}" "$1"; }

cleanup() {
  stop_gateway
  for label in old new; do
    mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS ${gw_name}_${label}" 2>/dev/null || true
    redis-cli -u "$redis_url" --scan --pattern "$(gateway_namespace "$label")*" \
      | xargs -r redis-cli -u "$redis_url" unlink >/dev/null || true
  done
}
trap cleanup EXIT

# Starts `serve` of binary $1 (label $2) on port $3; sets gateway_pid.
start_gateway() {
  SEATGATE_HTTP_ADDR=127.0.0.1:$3 \
    SEATGATE_DATABASE_URL=$mysql_base/${gw_name}_$2 \
    SEATGATE_REDIS_NAMESPACE=$(gateway_namespace "$2") \
    "$1" serve >>"$out/serve-$2.log" 2>&1 &
  gateway_pid=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$3/healthz" >/dev/null && return 0
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the $2 gateway did not start; see $out/serve-$2.log" >&2
  exit 1
}

stop_gateway() {
  if [ -n "$gateway_pid" ]; then
    kill "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
  gateway_pid=
}
