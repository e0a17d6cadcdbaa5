// Shared by the browser tests: the environment the Rust harness (tests/web/main.rs) sets,
// Chromium launched with a fake camera, gRPC-Web framing for raw HTTP checks, and a watcher
// that screenshots every state the page enters.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these through \`cargo test -p ekyc-tests --test web\``);
  return v;
};
export const URL_ = env("EKYC_WEB_URL");
export const ARTEFACTS = env("EKYC_ARTEFACTS");
mkdirSync(ARTEFACTS, { recursive: true });

/** Chromium from Debian (never a downloaded one). camera: "video" (the fake Y4M camera,
 * permission granted) or "denied" (the permission refused). */
export async function launch({ camera = "video", lang = "en-US" } = {}) {
  const args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", `--lang=${lang}`, "--use-fake-device-for-media-stream"];
  if (camera === "video") args.push("--use-fake-ui-for-media-stream", `--use-file-for-fake-video-capture=${env("EKYC_CAMERA_Y4M")}`);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args,
    env: { ...process.env, LANGUAGE: lang, LANG: lang.replace("-", "_") + ".UTF-8" },
    // A phone's screen.
    defaultViewport: { width: 390, height: 844, deviceScaleFactor: 1, isMobile: true, hasTouch: true },
  });
  if (camera === "denied") {
    const cdp = await browser.target().createCDPSession();
    await cdp.send("Browser.setPermission", { origin: URL_, permission: { name: "camera" }, setting: "denied" });
  }
  return browser;
}

/** A page that records script errors and CSP violations. */
export async function open(browser, path = "/", { lang } = {}) {
  const page = await browser.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
    if (m.type() === "warn") console.log(`# page warning: ${m.text()}`);
  });
  if (lang) {
    await page.setExtraHTTPHeaders({ "accept-language": lang });
    await page.evaluateOnNewDocument((l) => {
      Object.defineProperty(navigator, "language", { get: () => l });
      Object.defineProperty(navigator, "languages", { get: () => [l] });
    }, lang);
  }
  await page.goto(URL_ + path, { waitUntil: "domcontentloaded" });
  return { page, problems };
}

export const state = (page) => page.evaluate(() => document.body.dataset.ekycState);

/** Screenshots `page` once in every state it enters (`NAME-STATE.png`) until stopped. */
export function watch(page, name) {
  const seen = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped && !page.isClosed()) {
      try {
        const s = await state(page);
        if (s && !seen.includes(s)) {
          seen.push(s);
          await page.screenshot({ path: join(ARTEFACTS, `${name}-${String(seen.length).padStart(2, "0")}-${s}.png`), fullPage: true });
        }
      } catch {
        // navigating or closed
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  return {
    seen,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

export async function waitFor(page, fn, timeoutMs, ...args) {
  await page.waitForFunction(fn, { timeout: timeoutMs, polling: 100 }, ...args);
}

export function record(name, value) {
  writeFileSync(join(ARTEFACTS, name), JSON.stringify(value, null, 2) + "\n");
}

// --- gRPC-Web by hand (no generated client), for the HTTP-level checks ---------------------

function frame(message) {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** A protobuf message with one string field (field 1), e.g. GetSessionRequest. */
export function stringField1(s) {
  const b = new TextEncoder().encode(s);
  if (b.length > 127) throw new Error("short strings only");
  return new Uint8Array([0x0a, b.length, ...b]);
}

/** Calls `method` over gRPC-Web (`text`: grpc-web-text) and returns the HTTP status, the
 * grpc-status and grpc-message (from the headers of a trailers-only answer or the body's
 * trailer frame) and the response headers. */
export async function grpcWeb(method, message, { token, text = false, origin } = {}) {
  const body = frame(message);
  const kind = text ? "application/grpc-web-text" : "application/grpc-web+proto";
  // As grpc-web clients send them: the answer comes in the encoding `accept` names.
  const headers = { "content-type": kind, accept: kind, "x-grpc-web": "1" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (origin) headers.origin = origin;
  const r = await fetch(`${URL_}/ekyc.v1.Orchestrator/${method}`, {
    method: "POST",
    headers,
    body: text ? Buffer.from(body).toString("base64") : body,
  });
  let raw = new Uint8Array(await r.arrayBuffer());
  if (text) {
    // Each message and the trailers are base64 on their own, padding and all.
    const chunks = new TextDecoder().decode(raw).match(/[^=]+={0,2}|={1,2}/g) ?? [];
    raw = new Uint8Array(Buffer.concat(chunks.map((c) => Buffer.from(c, "base64"))));
  }
  let grpcStatus = r.headers.get("grpc-status");
  let grpcMessage = r.headers.get("grpc-message");
  for (let i = 0; i + 5 <= raw.length; ) {
    const flag = raw[i];
    const len = new DataView(raw.buffer, raw.byteOffset + i + 1, 4).getUint32(0);
    const data = raw.slice(i + 5, i + 5 + len);
    if (flag & 0x80) {
      for (const line of new TextDecoder().decode(data).split("\r\n")) {
        const [k, ...v] = line.split(":");
        if (k.toLowerCase() === "grpc-status") grpcStatus = v.join(":").trim();
        if (k.toLowerCase() === "grpc-message") grpcMessage = decodeURIComponent(v.join(":").trim());
      }
    }
    i += 5 + len;
  }
  return { http: r.status, grpcStatus: grpcStatus === null ? null : Number(grpcStatus), grpcMessage, headers: r.headers };
}

export async function demoSession() {
  const r = await fetch(`${URL_}/demo/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ locale: "en" }),
  });
  return { status: r.status, body: await r.json() };
}
