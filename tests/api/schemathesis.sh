#!/usr/bin/env bash
# Property-based API testing with schemathesis against the real server:
# every operation in /openapi.json is called with generated valid and invalid
# requests; no answer may be a 5xx, and every answer must match the schema
# (status code, content type, body). Usage:
#   tests/api/schemathesis.sh PATH/TO/doppel [SCHEMATHESIS]
set -euo pipefail
doppel="${1:?path to the doppel binary}"
st="${2:-schemathesis}"
data="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"

DOPPEL__AUTH__INSECURE_FAST_HASHING=true \
DOPPEL__LIMITS__REQUESTS_PER_SECOND=100000 DOPPEL__LIMITS__BURST=100000 \
DOPPEL__LIMITS__UPLOAD_MAX_MB=4 DOPPEL__FLIGHT_ADDR=off \
    "$doppel" serve --data-dir "$data" --http-addr "127.0.0.1:$port" --workers 1 2>"$data/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 600); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
curl -sf -X POST "$base/v1/auth/signup" -H 'content-type: application/json' \
    -d '{"email":"fuzz@example.com","password":"correct horse battery"}' >/dev/null
session="$(curl -sf -X POST "$base/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"fuzz@example.com","password":"correct horse battery"}' | json '["token"]')"
# An API key (not the session) so that fuzzing /auth/logout cannot end the run's credentials.
key="$(curl -sf -X POST "$base/v1/api-keys" -H "authorization: Bearer $session" -H 'content-type: application/json' \
    -d '{"name":"fuzz","scopes":["datasets:read","datasets:write","jobs:run"]}' | json '["secret"]')"

set +e
"$st" run "$base/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples 25 \
    --seed 7 \
    --request-timeout 30 \
    --generation-deterministic
status=$?
if grep -q "Request failed" "$data/server.log"; then
    echo "server logged internal errors:" >&2
    grep "Request failed" "$data/server.log" >&2
    exit 1
fi
exit $status
