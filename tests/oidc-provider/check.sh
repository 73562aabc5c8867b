#!/usr/bin/env bash
# Self-test for tests/oidc-provider/provider.mjs: starts it on a free loopback
# port and drives the authorization code + PKCE flow with curl.
# Usage: bash tests/oidc-provider/check.sh   (exits nonzero on any failure)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
PID=""

cleanup() {
  if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
fail() {
  echo "FAIL - $*" >&2
  if [[ -s "$WORK/provider.err" ]]; then
    echo "----- provider stderr -----" >&2
    cat "$WORK/provider.err" >&2
  fi
  exit 1
}

command -v node >/dev/null || fail "node not found"
command -v curl >/dev/null || fail "curl not found"
[[ -d "$HERE/node_modules/oidc-provider" ]] || fail "run 'npm ci' in $HERE first"

# json FILE EXPR: evaluate a JS expression against the parsed JSON document `j`.
json() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const v=('"$2"');process.stdout.write(v===undefined?"":typeof v==="string"?v:JSON.stringify(v))' -- "$1"; }
# query URL NAME: a query parameter from a URL.
query() { node -e 'process.stdout.write(new URL(process.argv[1]).searchParams.get(process.argv[2]) ?? "")' -- "$1" "$2"; }
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{process.stdout.write(String(s.address().port));s.close()})'; }
rand() { node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("base64url"))'; }
s256() { node -e 'process.stdout.write(require("crypto").createHash("sha256").update(process.argv[1]).digest("base64url"))' -- "$1"; }

PORT="$(free_port)"
ISSUER="http://127.0.0.1:$PORT"
CLIENT_ID="warrant-test"
CLIENT_SECRET="test-secret-$(rand)"
REDIRECT_URI="http://127.0.0.1:1/auth/callback"   # nothing listens there
JAR="$WORK/cookies.txt"

node "$HERE/provider.mjs" --port "$PORT" --client-id "$CLIENT_ID" --client-secret "$CLIENT_SECRET" \
  --redirect-uri "$REDIRECT_URI" --redirect-uri "http://localhost:1/other" \
  >"$WORK/provider.out" 2>"$WORK/provider.err" &
PID=$!

for _ in $(seq 1 100); do
  [[ -s "$WORK/provider.out" ]] && break
  kill -0 "$PID" 2>/dev/null || fail "provider exited before becoming ready"
  sleep 0.1
done
READY="$(cat "$WORK/provider.out")"
[[ "$READY" == "oidc-provider ready $ISSUER" ]] || fail "unexpected ready line: '$READY'"
ok "ready line: $READY"

# curl wrapper: cookie jar, no redirects followed; prints "status redirect_url".
req() { curl -sS -b "$JAR" -c "$JAR" -o "$WORK/body" -w '%{http_code} %{redirect_url}' "$@"; }

# --- discovery ---------------------------------------------------------------
curl -sSf "$ISSUER/.well-known/openid-configuration" -o "$WORK/discovery.json" || fail "discovery"
[[ "$(json "$WORK/discovery.json" j.issuer)" == "$ISSUER" ]] || fail "discovery issuer"
AUTHZ="$(json "$WORK/discovery.json" j.authorization_endpoint)"
TOKEN="$(json "$WORK/discovery.json" j.token_endpoint)"
JWKS_URI="$(json "$WORK/discovery.json" j.jwks_uri)"
USERINFO="$(json "$WORK/discovery.json" j.userinfo_endpoint)"
[[ "$(json "$WORK/discovery.json" j.authorization_response_iss_parameter_supported)" == "true" ]] || fail "iss parameter not advertised"
[[ "$(json "$WORK/discovery.json" 'j.code_challenge_methods_supported.join(" ")')" == "S256" ]] || fail "code_challenge_methods_supported"
[[ "$(json "$WORK/discovery.json" 'j.token_endpoint_auth_methods_supported.join(" ")')" == "client_secret_basic client_secret_post" ]] || fail "token_endpoint_auth_methods_supported"
[[ "$(json "$WORK/discovery.json" 'j.id_token_signing_alg_values_supported.includes("RS256")')" == "true" ]] || fail "RS256 not supported"
ok "discovery: authorization=$AUTHZ token=$TOKEN jwks=$JWKS_URI userinfo=$USERINFO"

# authorize STATE NONCE CHALLENGE [extra curl args]: start a flow, print the Location.
authorize() {
  local out
  out="$(req -G "$AUTHZ" \
    --data-urlencode "client_id=$CLIENT_ID" \
    --data-urlencode "redirect_uri=$REDIRECT_URI" \
    --data-urlencode "response_type=code" \
    --data-urlencode "scope=openid profile email" \
    --data-urlencode "state=$1" \
    --data-urlencode "nonce=$2" \
    --data-urlencode "code_challenge=$3" \
    --data-urlencode "code_challenge_method=S256" "${@:4}")"
  [[ "${out%% *}" == "303" ]] || fail "authorize returned ${out%% *}: $(cat "$WORK/body")"
  echo "${out#* }"
}

# --- authorization request without PKCE is refused ---------------------------
out="$(req -G "$AUTHZ" --data-urlencode "client_id=$CLIENT_ID" --data-urlencode "redirect_uri=$REDIRECT_URI" \
  --data-urlencode "response_type=code" --data-urlencode "scope=openid" --data-urlencode "state=nopkce")"
loc="${out#* }"
[[ "$loc" == "$REDIRECT_URI?"* && "$(query "$loc" error)" == "invalid_request" ]] || fail "missing code_challenge not refused: $out"
ok "authorize without code_challenge -> error=invalid_request ($(query "$loc" error_description))"

# --- flow 1: alice, client_secret_basic --------------------------------------
STATE="$(rand)"; NONCE="$(rand)"; VERIFIER="$(rand)"; CHALLENGE="$(s256 "$VERIFIER")"
LOGIN_URL="$(authorize "$STATE" "$NONCE" "$CHALLENGE")"
[[ "$LOGIN_URL" =~ ^$ISSUER/interaction/[A-Za-z0-9_-]+$ ]] || fail "authorize did not redirect to interaction: $LOGIN_URL"
ok "authorize -> $LOGIN_URL"

out="$(req "$LOGIN_URL")"
[[ "${out%% *}" == "200" ]] || fail "interaction page status $out"
grep -q 'name="login"' "$WORK/body" || fail "login input missing"
grep -q 'name="password"' "$WORK/body" || fail "password input missing"
grep -q '<label for="login">Username</label>' "$WORK/body" || fail "Username label missing"
grep -q '<label for="password">Password</label>' "$WORK/body" || fail "Password label missing"
grep -q '<button type="submit">Sign in</button>' "$WORK/body" || fail "Sign in button missing"
ACTION="$(sed -n 's/.*<form method="post" action="\([^"]*\)".*/\1/p' "$WORK/body")"
[[ "$ACTION" == "${LOGIN_URL#"$ISSUER"}/login" ]] || fail "unexpected form action '$ACTION'"
ok "login form rendered (action $ACTION)"

out="$(req -X POST "$ISSUER$ACTION" --data-urlencode "login=alice" --data-urlencode "password=wrong password")"
[[ "$out" == "200 " ]] || fail "wrong password should re-render with 200 and no redirect, got '$out'"
grep -q 'Invalid username or password.' "$WORK/body" || fail "wrong password error message missing"
grep -q 'name="password"' "$WORK/body" || fail "form not re-rendered"
ok "wrong password -> 200, form re-rendered with error, no redirect"

out="$(req -X POST "$ISSUER$ACTION" --data-urlencode "login=nobody" --data-urlencode "password=correct horse battery staple")"
[[ "$out" == "200 " ]] && grep -q 'Invalid username or password.' "$WORK/body" || fail "unknown user should re-render, got '$out'"
ok "unknown user -> 200, form re-rendered with error"

out="$(req -X POST "$ISSUER$ACTION" --data-urlencode "login=alice" --data-urlencode "password=correct horse battery staple")"
[[ "${out%% *}" == "303" ]] || fail "login did not redirect: $out"
RESUME="${out#* }"
ok "login -> 303 $RESUME"

out="$(req "$RESUME")"
[[ "${out%% *}" == "303" ]] || fail "resume did not redirect: $out $(cat "$WORK/body")"
CALLBACK="${out#* }"
[[ "$CALLBACK" == "$REDIRECT_URI?"* ]] || fail "final redirect is not to redirect_uri: $CALLBACK"
[[ "$(query "$CALLBACK" state)" == "$STATE" ]] || fail "state mismatch in $CALLBACK"
[[ "$(query "$CALLBACK" iss)" == "$ISSUER" ]] || fail "RFC 9207 iss missing/mismatched in $CALLBACK"
CODE="$(query "$CALLBACK" code)"
[[ -n "$CODE" ]] || fail "no code in $CALLBACK"
ok "redirect to redirect_uri with code, state and iss=$(query "$CALLBACK" iss)"

# token request without code_verifier must be refused
out="$(curl -sS -o "$WORK/token.json" -w '%{http_code}' -u "$CLIENT_ID:$CLIENT_SECRET" "$TOKEN" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" --data-urlencode "redirect_uri=$REDIRECT_URI")"
[[ "$out" == "400" && "$(json "$WORK/token.json" j.error)" == "invalid_grant" ]] || fail "token without code_verifier: $out $(cat "$WORK/token.json")"
ok "token without code_verifier -> 400 invalid_grant"

out="$(curl -sS -o "$WORK/token.json" -w '%{http_code}' -u "$CLIENT_ID:$CLIENT_SECRET" "$TOKEN" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=wrong-$VERIFIER")"
[[ "$out" == "400" && "$(json "$WORK/token.json" j.error)" == "invalid_grant" ]] || fail "token with wrong code_verifier: $out $(cat "$WORK/token.json")"
ok "token with wrong code_verifier -> 400 invalid_grant"

# exchange: client_secret_basic + correct verifier. (Failed PKCE attempts do
# not consume the code in oidc-provider 9, so the same code still works.)
out="$(curl -sS -o "$WORK/token.json" -w '%{http_code}' -u "$CLIENT_ID:$CLIENT_SECRET" "$TOKEN" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER")"
[[ "$out" == "200" ]] || fail "token exchange: $out $(cat "$WORK/token.json")"
ok "token exchange (client_secret_basic) -> 200 token_type=$(json "$WORK/token.json" j.token_type)"

curl -sSf "$JWKS_URI" -o "$WORK/jwks.json" || fail "jwks"

# check_id_token TOKEN_JSON NONCE SUB EMAIL NAME: decode, verify RS256 signature, assert claims.
check_id_token() {
  node - "$1" "$WORK/jwks.json" "$ISSUER" "$CLIENT_ID" "$2" "$3" "$4" "$5" <<'JS'
const fs = require('fs'), crypto = require('crypto');
const [tokenFile, jwksFile, iss, aud, nonce, sub, email, name] = process.argv.slice(2);
const idToken = JSON.parse(fs.readFileSync(tokenFile, 'utf8')).id_token;
if (!idToken) { console.error('no id_token'); process.exit(1); }
const [h, p, s] = idToken.split('.');
const header = JSON.parse(Buffer.from(h, 'base64url'));
const payload = JSON.parse(Buffer.from(p, 'base64url'));
const fails = [];
const eq = (k, got, want) => { if (got !== want) fails.push(`${k}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`); };
eq('alg', header.alg, 'RS256');
const jwk = JSON.parse(fs.readFileSync(jwksFile, 'utf8')).keys.find((k) => k.kid === header.kid);
if (!jwk) fails.push(`kid ${header.kid} not in JWKS`);
else if (!crypto.verify('RSA-SHA256', Buffer.from(`${h}.${p}`), crypto.createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url'))) fails.push('signature invalid');
eq('iss', payload.iss, iss);
eq('aud', Array.isArray(payload.aud) ? payload.aud.join(' ') : payload.aud, aud);
eq('nonce', payload.nonce, nonce);
eq('sub', payload.sub, sub);
eq('email', payload.email, email);
eq('email_verified', payload.email_verified, true);
eq('name', payload.name, name);
eq('preferred_username', payload.preferred_username, sub);
const now = Math.floor(Date.now() / 1000);
if (!(payload.exp > now)) fails.push('exp not in the future');
if (fails.length) { console.error(fails.join('\n')); process.exit(1); }
console.log(JSON.stringify(payload));
JS
}

PAYLOAD="$(check_id_token "$WORK/token.json" "$NONCE" alice alice@example.com "Alice Admin")" || fail "id_token assertions"
ok "id_token verified (RS256, JWKS): $PAYLOAD"

ACCESS_TOKEN="$(json "$WORK/token.json" j.access_token)"
curl -sSf -H "Authorization: Bearer $ACCESS_TOKEN" "$USERINFO" -o "$WORK/userinfo.json" || fail "userinfo"
[[ "$(json "$WORK/userinfo.json" j.sub)" == "alice" && "$(json "$WORK/userinfo.json" j.email)" == "alice@example.com" ]] || fail "userinfo: $(cat "$WORK/userinfo.json")"
ok "userinfo: $(cat "$WORK/userinfo.json")"


# --- flow 2: existing session, no prompt -> straight back to redirect_uri -----
CODE1="$CODE"; VERIFIER1="$VERIFIER"
STATE="$(rand)"; NONCE="$(rand)"; VERIFIER="$(rand)"
LOC="$(authorize "$STATE" "$NONCE" "$(s256 "$VERIFIER")")"
[[ "$LOC" == "$REDIRECT_URI?"* && "$(query "$LOC" state)" == "$STATE" ]] || fail "SSO flow did not return to redirect_uri: $LOC"
ok "second authorize with session -> redirect_uri directly, no login form"

# --- code replay: refused, and (RFC 6749 10.5) the grant behind it is revoked --
out="$(curl -sS -o "$WORK/token.json" -w '%{http_code}' -u "$CLIENT_ID:$CLIENT_SECRET" "$TOKEN" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$CODE1" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER1")"
[[ "$out" == "400" && "$(json "$WORK/token.json" j.error)" == "invalid_grant" ]] || fail "code replay not refused: $out"
ok "code replay -> 400 invalid_grant"

# With the grant revoked, the next request needs consent again; the consent
# interaction completes by itself (no page) and returns to redirect_uri.
STATE="$(rand)"; NONCE="$(rand)"; VERIFIER="$(rand)"
LOC="$(authorize "$STATE" "$NONCE" "$(s256 "$VERIFIER")")"
[[ "$LOC" == "$ISSUER/interaction/"* ]] || fail "expected a consent interaction after grant revocation: $LOC"
out="$(req "$LOC")"; [[ "${out%% *}" == "303" ]] || fail "consent interaction did not auto-complete: $out"
out="$(req "${out#* }")"; LOC="${out#* }"
[[ "$LOC" == "$REDIRECT_URI?"* && "$(query "$LOC" state)" == "$STATE" ]] || fail "consent flow did not return to redirect_uri: $LOC"
ok "authorize after grant revocation -> consent interaction auto-completes -> redirect_uri"

# --- flow 3: prompt=login as bob, client_secret_post -------------------------
STATE="$(rand)"; NONCE="$(rand)"; VERIFIER="$(rand)"
LOGIN_URL="$(authorize "$STATE" "$NONCE" "$(s256 "$VERIFIER")" --data-urlencode prompt=login)"
[[ "$LOGIN_URL" == "$ISSUER/interaction/"* ]] || fail "prompt=login did not show the form: $LOGIN_URL"
req "$LOGIN_URL" >/dev/null
out="$(req -X POST "$LOGIN_URL/login" --data-urlencode "login=bob" --data-urlencode "password=correct horse battery staple")"
[[ "${out%% *}" == "303" ]] || fail "bob login: $out"
out="$(req "${out#* }")"
# Switching account in the same browser: oidc-provider ends alice's session first
# with an auto-submitting (JavaScript) form post to /session/end/confirm, which
# then redirects back to the resume URL. A browser does this by itself; emulate it.
if [[ "${out%% *}" == "200" ]] && grep -q '/session/end/confirm' "$WORK/body"; then
  XSRF="$(sed -n 's/.*name="xsrf" value="\([^"]*\)".*/\1/p' "$WORK/body")"
  out="$(req -X POST "$ISSUER/session/end/confirm" --data-urlencode "xsrf=$XSRF" --data-urlencode logout=yes)"
  [[ "${out%% *}" == "303" ]] || fail "end-session confirm: $out $(cat "$WORK/body")"
  out="$(req "${out#* }")"
  ok "account switch: previous session ended via /session/end/confirm"
fi
[[ "${out%% *}" == "303" ]] || fail "bob resume: $out $(cat "$WORK/body")"
CALLBACK="${out#* }"
[[ "$(query "$CALLBACK" state)" == "$STATE" ]] || fail "bob callback: $CALLBACK"
out="$(curl -sS -o "$WORK/token.json" -w '%{http_code}' "$TOKEN" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$(query "$CALLBACK" code)" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER" \
  --data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret=$CLIENT_SECRET")"
[[ "$out" == "200" ]] || fail "client_secret_post exchange: $out $(cat "$WORK/token.json")"
PAYLOAD="$(check_id_token "$WORK/token.json" "$NONCE" bob bob@example.com "Bob Approver")" || fail "bob id_token assertions"
ok "prompt=login as bob + client_secret_post -> sub=bob"

out="$(curl -sS -o "$WORK/token.json" -w '%{http_code}' -u "$CLIENT_ID:wrong-secret" "$TOKEN" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=x" --data-urlencode "redirect_uri=$REDIRECT_URI" \
  --data-urlencode "code_verifier=$VERIFIER")"
[[ "$out" == "401" && "$(json "$WORK/token.json" j.error)" == "invalid_client" ]] || fail "wrong client secret: $out"
ok "wrong client secret -> 401 invalid_client"

# --- clean shutdown ----------------------------------------------------------
kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
PID=""
[[ "$rc" == "0" ]] || fail "provider exited with $rc on SIGTERM"
[[ "$(wc -l <"$WORK/provider.out")" == "1" ]] || fail "stdout has more than the ready line: $(cat "$WORK/provider.out")"
ok "SIGTERM -> exit 0; stdout was exactly the ready line"

# --- deliberately different issuer (mix-up / wrong-issuer tests) -------------
# --issuer is independent of the listen address: endpoints stay on loopback,
# but discovery, the RFC 9207 iss parameter and the id_token carry --issuer.
PORT2="$(free_port)"
WRONG_ISSUER="https://issuer.invalid/tenant"
rm -f "$JAR"
node "$HERE/provider.mjs" --port "$PORT2" --issuer "$WRONG_ISSUER" --client-id "$CLIENT_ID" \
  --client-secret "$CLIENT_SECRET" --redirect-uri "$REDIRECT_URI" \
  >"$WORK/provider.out" 2>"$WORK/provider.err" &
PID=$!
for _ in $(seq 1 100); do
  [[ -s "$WORK/provider.out" ]] && break
  kill -0 "$PID" 2>/dev/null || fail "second provider exited before becoming ready"
  sleep 0.1
done
[[ "$(cat "$WORK/provider.out")" == "oidc-provider ready $WRONG_ISSUER" ]] || fail "ready line with --issuer: $(cat "$WORK/provider.out")"
BASE2="http://127.0.0.1:$PORT2"
curl -sSf "$BASE2/.well-known/openid-configuration" -o "$WORK/discovery.json" || fail "discovery (wrong issuer)"
[[ "$(json "$WORK/discovery.json" j.issuer)" == "$WRONG_ISSUER" ]] || fail "discovery issuer should be $WRONG_ISSUER"
AUTHZ="$(json "$WORK/discovery.json" j.authorization_endpoint)"
[[ "$AUTHZ" == "$BASE2/auth" ]] || fail "endpoints should stay on the listen address: $AUTHZ"
STATE="$(rand)"; NONCE="$(rand)"; VERIFIER="$(rand)"
LOGIN_URL="$(authorize "$STATE" "$NONCE" "$(s256 "$VERIFIER")")"
[[ "$LOGIN_URL" == "$BASE2/interaction/"* ]] || fail "wrong-issuer authorize: $LOGIN_URL"
req "$LOGIN_URL" >/dev/null
out="$(req -X POST "$LOGIN_URL/login" --data-urlencode "login=carol" --data-urlencode "password=correct horse battery staple")"
[[ "${out%% *}" == "303" ]] || fail "wrong-issuer login: $out"
out="$(req "${out#* }")"; CALLBACK="${out#* }"
[[ "$CALLBACK" == "$REDIRECT_URI?"* ]] || fail "wrong-issuer callback: $out"
[[ "$(query "$CALLBACK" iss)" == "$WRONG_ISSUER" ]] || fail "iss parameter should be $WRONG_ISSUER: $CALLBACK"
out="$(curl -sS -o "$WORK/token.json" -w '%{http_code}' -u "$CLIENT_ID:$CLIENT_SECRET" "$(json "$WORK/discovery.json" j.token_endpoint)" \
  --data-urlencode grant_type=authorization_code --data-urlencode "code=$(query "$CALLBACK" code)" \
  --data-urlencode "redirect_uri=$REDIRECT_URI" --data-urlencode "code_verifier=$VERIFIER")"
[[ "$out" == "200" ]] || fail "wrong-issuer token: $out $(cat "$WORK/token.json")"
curl -sSf "$(json "$WORK/discovery.json" j.jwks_uri)" -o "$WORK/jwks.json" || fail "jwks (wrong issuer)"
ISSUER="$WRONG_ISSUER" check_id_token "$WORK/token.json" "$NONCE" carol carol@example.com "Carol Auditor" >/dev/null || fail "carol id_token"
ok "--issuer $WRONG_ISSUER on $BASE2: discovery, iss parameter and id_token iss all carry it"
kill -TERM "$PID"; rc=0; wait "$PID" || rc=$?; PID=""
[[ "$rc" == "0" ]] || fail "second provider exited with $rc on SIGTERM"

echo "all $PASS checks passed"
