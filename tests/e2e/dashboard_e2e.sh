#!/usr/bin/env bash
# End-to-end test of the dashboard in headless Chromium (Debian's `chromium`).
#
#   dashboard_e2e.sh AICACHE_BINARY ARTIFACT_DIR
#
# Starts `aicache serve` on the memory store on a free loopback port, makes
# API requests with curl (a PUT, GETs that hit and miss), lets Chromium run
# the page's JavaScript for a few seconds of virtual time, and checks in the
# dumped DOM that the figures moved: requests and entries above 0, a hit rate
# shown, the status live. One token app is configured with a platform address
# where nothing listens (a closed loopback port), so its row shows no token and
# its failures, and its secret must appear nowhere. Then an API token is set:
# GET / still loads, /v1/stats answers 401 and the page shows its token form.
# Saves a screenshot to ARTIFACT_DIR/dashboard.png.
#
# Exit codes: 0 pass, 1 fail (with a message saying what), 77 skipped
# (Chromium not installed; registered with CTest as SKIP_RETURN_CODE 77).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 AICACHE_BINARY ARTIFACT_DIR" >&2
  exit 2
fi
aicache=$1
artifacts=$2

chromium_bin=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium_bin" ]; then
  echo "SKIP: chromium not installed"
  exit 77
fi
if ! command -v curl > /dev/null; then
  echo "SKIP: curl not installed"
  exit 77
fi
if [ ! -x "$aicache" ]; then
  echo "FAIL: $aicache is not an executable" >&2
  exit 1
fi
aicache=$(realpath "$aicache")  # the server runs from a scratch directory

work=$(mktemp -d "${TMPDIR:-/tmp}/aicache-e2e.XXXXXX")
server_pid=""
traffic_pid=""
cleanup() {
  [ -n "$traffic_pid" ] && kill "$traffic_pid" 2> /dev/null || true
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  if [ -f "$work/serve.log" ]; then
    echo "--- last lines of the server's log:" >&2
    tail -n 20 "$work/serve.log" >&2
  fi
  exit 1
}

# ---- the server -------------------------------------------------------------

port_in_use() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# start_server [API_TOKEN]: `aicache serve` on a free port, on the memory
# store, in an empty directory (no aicache.toml or .env to pick up) and
# without the Redis and aicache variables of the calling environment. Sets
# $port and $base. Retries on another port if the chosen one was taken
# between the check and the bind.
start_server() {
  local token=${1:-}
  local attempt
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    port_in_use "$port" && continue
    mkdir -p "$work/cwd"
    cat > "$work/cwd/aicache.toml" << EOF
[[apps]]
channel = "wechat"
app_id = "$app_id"
secret_env = "AICACHE_E2E_WX_SECRET"
base_url = "http://127.0.0.1:$dead_port"
EOF
    (
      cd "$work/cwd"
      unset REDIS_URL REDIS_HOST REDIS_PORT REDIS_DB REDIS_PASSWORD \
            AICACHE_CONFIG AICACHE_KEY_PREFIX AICACHE_SERVER AICACHE_API_TOKEN AICACHE_LISTEN
      [ -n "$token" ] && export AICACHE_API_TOKEN="$token"
      export AICACHE_E2E_WX_SECRET="$app_secret"
      exec "$aicache" serve --listen "127.0.0.1:$port"
    ) > "$work/serve.log" 2>&1 &
    server_pid=$!
    base="http://127.0.0.1:$port"
    local i
    for i in $(seq 1 100); do
      if ! kill -0 "$server_pid" 2> /dev/null; then
        break  # exited: the port was taken, or it failed; try again below
      fi
      if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ]; then
        return 0
      fi
      sleep 0.1
    done
    kill "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
    server_pid=""
  done
  fail "aicache serve did not answer GET /healthz (5 attempts)"
}

stop_server() {
  kill "$server_pid" 2> /dev/null || true
  wait "$server_pid" 2> /dev/null || true
  server_pid=""
}

# ---- helpers ------------------------------------------------------------------

# http METHOD PATH [BODY]: prints the status code; the body goes to $work/body.
http() {
  local args=(-s -o "$work/body" -w '%{http_code}' -X "$1" "$base$2")
  [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
  curl "${args[@]}"
}

expect_status() {  # expect_status WANT METHOD PATH [BODY]
  local want=$1
  shift
  local got
  got=$(http "$@")
  [ "$got" = "$want" ] || fail "$1 $2 answered $got, expected $want: $(head -c 300 "$work/body")"
}

# Chromium, headless, with a fresh profile each time and nothing that calls
# out to the network.
run_chromium() {
  local profile
  profile=$(mktemp -d "$work/profile.XXXXXX")
  timeout 90 "$chromium_bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-dev-shm-usage \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" "$@" 2>> "$work/chromium.log"
}

# text_of ID FILE: the text of the element with that id in a dumped DOM.
text_of() {
  grep -o "id=\"$1\"[^>]*>[^<]*<" "$2" | head -n 1 | sed 's/.*>\(.*\)</\1/' || true
}

# A number shown with thousands separators ("1,234"), as an integer.
as_int() {
  local v=${1//,/}
  [[ "$v" =~ ^[0-9]+$ ]] && echo "$v" || echo ""
}

# Bounded background traffic while Chromium runs, so the rates have
# something to show: at most 300 requests, then it stops by itself.
start_traffic() {
  (
    for i in $(seq 1 100); do
      curl -s -o /dev/null "$base/v1/kv/e2e-x" || true
      curl -s -o /dev/null "$base/v1/kv/e2e-missing" || true
      curl -s -o /dev/null -X PUT -H 'Content-Type: application/json' \
        --data-binary "{\"n\": $i}" "$base/v1/kv/e2e-n$((i % 10))" || true
      sleep 0.02
    done
  ) &
  traffic_pid=$!
}

stop_traffic() {
  kill "$traffic_pid" 2> /dev/null || true
  wait "$traffic_pid" 2> /dev/null || true
  traffic_pid=""
}

mkdir -p "$artifacts"

# The token app: its platform is a loopback port where nothing listens, so
# every fetch fails at once (no fake platform to build or start).
app_id=wxe2e0000000000001
app_secret="e2e-app-secret-$RANDOM$RANDOM-never-shown"
dead_port=""
for _ in $(seq 1 20); do
  p=$((20000 + RANDOM % 40000))
  port_in_use "$p" || { dead_port=$p; break; }
done
[ -n "$dead_port" ] || fail "no free port for the unreachable platform"

# ---- without an API token ---------------------------------------------------

start_server
echo "aicache serve listening on $base"

# SIGHUP reloads the configuration (the same one here) and logs it; it never ends the service.
kill -HUP "$server_pid"
for _ in $(seq 1 50); do grep -q SIGHUP "$work/serve.log" && break; sleep 0.1; done
grep -q SIGHUP "$work/serve.log" || fail "SIGHUP was not logged: $(tail -n 5 "$work/serve.log")"
kill -0 "$server_pid" 2> /dev/null || fail "SIGHUP stopped the service"
expect_status 200 GET /healthz

expect_status 200 GET /
grep -q 'id="hit-rate-value"' "$work/body" || fail "GET / is not the dashboard (no #hit-rate-value)"
grep -qiE '<script[^>]+src=|<link[^>]+href=["'"'"']?https?:' "$work/body" &&
  fail "the dashboard loads something from outside the page"

# A value, hits and a miss.
put_status=$(http PUT /v1/kv/e2e-x '{"hello": "dashboard", "n": [1, 2, 3]}')
case "$put_status" in 200 | 201 | 204) ;; *) fail "PUT /v1/kv/e2e-x answered $put_status: $(head -c 300 "$work/body")" ;; esac
for _ in 1 2 3; do expect_status 200 GET /v1/kv/e2e-x; done
grep -q dashboard "$work/body" || fail "GET /v1/kv/e2e-x did not return the value put"
expect_status 404 GET /v1/kv/e2e-missing
# The token app: the platform is unreachable, so 502, and a failure counted.
expect_status 502 GET "/v1/tokens/wechat/$app_id"
expect_status 200 GET /v1/stats
grep -q '"requests_total"' "$work/body" || fail "/v1/stats has no requests_total: $(head -c 300 "$work/body")"
requests_before=$(grep -o '"requests_total": *[0-9]*' "$work/body" | grep -o '[0-9]*$')

# A hot key: 300 reads of e2e-x on one connection (hot keys sample 1 read in 16; none
# sampled out of 300 has odds of 4e-9).
urls=()
for _ in $(seq 1 300); do urls+=("$base/v1/kv/e2e-x"); done
curl -s "${urls[@]}" > /dev/null || fail "the hot-key reads failed"

# The page, after 6 s of virtual time (six polls), with traffic going on.
start_traffic
run_chromium --virtual-time-budget=6000 --dump-dom "$base/" > "$work/dom.html" ||
  fail "chromium --dump-dom failed (see below)$(echo; tail -n 20 "$work/chromium.log")"
stop_traffic
cp "$work/dom.html" "$artifacts/dashboard-dom.html"

status=$(text_of status-text "$work/dom.html")
hit_rate=$(text_of hit-rate-value "$work/dom.html")
rps=$(text_of rps-value "$work/dom.html")
entries=$(as_int "$(text_of entries-value "$work/dom.html")")
requests=$(as_int "$(text_of requests-total-value "$work/dom.html")")
memory=$(text_of memory-value "$work/dom.html")
echo "page: status=$status hit_rate=$hit_rate rps=$rps entries=$entries requests=$requests memory=$memory"

[ "$status" = live ] || fail "the status is '$status', not 'live' (the page could not read /v1/stats)"
[ -n "$requests" ] && [ "$requests" -gt 0 ] || fail "#requests-total-value is '$requests', expected > 0"
[ "$requests" -gt "$requests_before" ] ||
  fail "#requests-total-value ($requests) did not move past $requests_before: the page is not live"
[ -n "$entries" ] && [ "$entries" -gt 0 ] || fail "#entries-value is '$entries', expected > 0"
[[ "$hit_rate" =~ ^[0-9]+(\.[0-9])?\ %$ ]] || fail "#hit-rate-value is '$hit_rate', expected a percentage"
[[ "$rps" =~ ^[0-9][0-9,.]*$ ]] || fail "#rps-value is '$rps', expected a rate (two polls or more)"
[ -n "$memory" ] && [ "$memory" != "—" ] || fail "#memory-value is empty"

# Hit rate by family: a row per family, kv's counted from the traffic.
kv_row=$(grep -o '<tr data-family="kv">.*' "$work/dom.html" | sed 's|</tr>.*||' | head -n 1 || true)
[ -n "$kv_row" ] || fail "no kv row in the hit rate by family table"
[[ "$kv_row" =~ [0-9]+(\.[0-9])?\ % ]] || fail "the kv row shows no hit rate: $kv_row"
for family in token conversation ai_config; do
  grep -q "<tr data-family=\"$family\">" "$work/dom.html" || fail "no $family row in the hit rate by family table"
done
echo "families: $kv_row"
# TTL signals by family: kv's hits have an age ([ttl] default is the kv TTL).
ttl_row=$(grep -o '<tr data-ttl-family="kv">.*' "$work/dom.html" | sed 's|</tr>.*||' | head -n 1 || true)
ttl_pattern='<td>kv</td><td>[1-9][0-9,]*</td><td>[0-9]+ s</td>'
[[ "$ttl_row" =~ $ttl_pattern ]] || fail "the kv row of the TTL signals shows no ages: $ttl_row"
echo "ttl signals: $ttl_row"
# Hot keys: the traffic reads e2e-x over and over (sampled 1 in 16, so it shows after a
# few dozen reads).
grep -q '<tr class="hot-key"><td>e2e-x</td><td>kv</td>' "$work/dom.html" ||
  fail "e2e-x is not among the hot keys: $(grep -o 'id="hot-keys-body".\{0,300\}' "$work/dom.html")"

# The token app's row: its expiry ("no token": the platform never answered)
# and its failures, never its secret.
row=$(grep -o "data-app=\"wechat/$app_id\".*" "$work/dom.html" | head -n 1 || true)
[ -n "$row" ] || fail "no row [data-app=\"wechat/$app_id\"] for the token app"
expiry=$(grep -o 'class="expiry-value[^"]*">[^<]*' <<< "$row" | head -n 1 | sed 's/.*>//' || true)
[ -n "$expiry" ] || fail "the token app's row has no .expiry-value"
[ "$expiry" = "no token" ] || fail "the token app's .expiry-value is '$expiry', expected 'no token'"
grep -q 'class="pill on" data-kind="retryable">retryable [1-9]' <<< "$row" ||
  fail "the token app's row does not show its retryable fetch failures"
echo "token app row: wechat/$app_id expiry='$expiry', retryable failures shown"
grep -q "$app_secret" "$work/dom.html" && fail "the app's secret appears in the page"

# The screenshot, a test artifact.
rm -f "$artifacts/dashboard.png"
start_traffic
run_chromium --virtual-time-budget=8000 --window-size=1280,900 \
  --screenshot="$artifacts/dashboard.png" "$base/" > /dev/null ||
  fail "chromium --screenshot failed$(echo; tail -n 20 "$work/chromium.log")"
stop_traffic
[ -s "$artifacts/dashboard.png" ] || fail "no screenshot at $artifacts/dashboard.png"
[ "$(head -c 4 "$artifacts/dashboard.png" | tail -c 3)" = PNG ] || fail "$artifacts/dashboard.png is not a PNG"
echo "screenshot: $artifacts/dashboard.png"
stop_server

# ---- with an API token: the page loads and asks for it ------------------------

# 32 characters at least: weaker API tokens are refused at start.
api_token="e2e-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
start_server "$api_token"
expect_status 200 GET /
expect_status 401 GET /v1/stats
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $api_token" "$base/v1/stats")
[ "$code" = 200 ] || fail "GET /v1/stats with the API token answered $code"

run_chromium --virtual-time-budget=3000 --dump-dom "$base/" > "$work/dom-auth.html" ||
  fail "chromium --dump-dom (API token) failed$(echo; tail -n 20 "$work/chromium.log")"
grep -q 'id="auth" hidden' "$work/dom-auth.html" &&
  fail "with an API token set, the page did not show its token form"
grep -q 'id="auth-form"' "$work/dom-auth.html" || fail "the token form is missing from the page"
grep -q "$api_token" "$work/dom-auth.html" && fail "the API token appears in the page"
echo "page with an API token: $(text_of status-text "$work/dom-auth.html"), token form shown"
stop_server

echo "PASS: dashboard end to end"
