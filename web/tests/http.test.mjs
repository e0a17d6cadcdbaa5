// The web port over plain HTTP: its security headers, gRPC-Web authentication (the page's
// only credential is a session token; no token, no call), CORS for listed origins only, and
// demo sessions that hand out a token and nothing else.
import assert from "node:assert/strict";
import { test } from "node:test";
import { URL_, demoSession, env, grpcWeb, stringField1 } from "./helpers.mjs";

const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;
const OK = 0;

test("the page is served with a strict CSP and hashed, immutable assets", async () => {
  const r = await fetch(`${URL_}/`);
  assert.equal(r.status, 200);
  const csp = r.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);
  assert.equal(r.headers.get("x-content-type-options"), "nosniff");
  assert.equal(r.headers.get("cache-control"), "no-store");
  const html = await r.text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
  assert.equal(assets.length, 2, html);
  for (const a of assets) {
    assert.match(a, /^\/assets\/app\.[0-9a-f]{20}\.(js|css)$/);
    const ar = await fetch(URL_ + a);
    assert.equal(ar.status, 200);
    assert.match(ar.headers.get("cache-control"), /immutable/);
    const body = await ar.text();
    assert.ok(!body.includes(env("EKYC_API_KEY")), "no API key in the page");
  }
  assert.equal((await fetch(`${URL_}/assets/app.js`)).status, 404, "only hashed names are served");
});

test("gRPC-Web without a token is refused, in binary and in text", async () => {
  for (const text of [false, true]) {
    const r = await grpcWeb("GetSession", stringField1("anything"), { text });
    assert.equal(r.grpcStatus, UNAUTHENTICATED, `text=${text}: ${r.grpcMessage}`);
    const bad = await grpcWeb("ListPolicies", new Uint8Array(), { text, token: "st1.forged.99999999999999.AAAA" });
    assert.equal(bad.grpcStatus, UNAUTHENTICATED, `text=${text}: ${bad.grpcMessage}`);
  }
});

test("a demo session gives the page an id and a token, and the token opens that session only", async () => {
  const { status, body } = await demoSession();
  assert.equal(status, 200);
  assert.deepEqual(Object.keys(body).sort(), ["session_id", "session_token"]);
  const mine = await grpcWeb("GetSession", stringField1(body.session_id), { token: body.session_token });
  assert.equal(mine.grpcStatus, OK, mine.grpcMessage);
  const text = await grpcWeb("GetSession", stringField1(body.session_id), { token: body.session_token, text: true });
  assert.equal(text.grpcStatus, OK, text.grpcMessage);
  const other = await demoSession();
  const theirs = await grpcWeb("GetSession", stringField1(other.body.session_id), { token: body.session_token });
  assert.equal(theirs.grpcStatus, PERMISSION_DENIED, theirs.grpcMessage);
  // A session token cannot start sessions: only an API key can, and the page has none.
  const start = await grpcWeb("StartSession", new Uint8Array(), { token: body.session_token });
  assert.equal(start.grpcStatus, PERMISSION_DENIED, start.grpcMessage);
});

test("demo sessions are refused to other sites' pages", async () => {
  const r = await fetch(`${URL_}/demo/session`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: "https://evil.example" },
    body: "{}",
  });
  assert.equal(r.status, 403);
  const form = await fetch(`${URL_}/demo/session`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "locale=en",
  });
  assert.equal(form.status, 415, "only JSON, which a cross-site form cannot send");
});

test("CORS lets only the listed origins call gRPC-Web", async () => {
  const preflight = (origin) =>
    fetch(`${URL_}/ekyc.v1.Orchestrator/GetSession`, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,x-grpc-web",
      },
    });
  const allowed = await preflight("https://allowed.example");
  assert.equal(allowed.headers.get("access-control-allow-origin"), "https://allowed.example");
  assert.match(allowed.headers.get("access-control-allow-headers") ?? "", /authorization/);
  const other = await preflight("https://evil.example");
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  const r = await grpcWeb("GetSession", stringField1("x"), { origin: "https://allowed.example" });
  assert.match(r.headers.get("access-control-expose-headers") ?? "", /grpc-status/);
});
