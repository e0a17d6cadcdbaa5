// The verification page: one session, from the camera's pose challenge through the ID
// document and (when the policy asks) the signature to the decision, over gRPC-Web with the
// session's own token. It never holds an API key: the session id and token come from the
// operator's back end in the URL fragment (#session=...&token=...), or, with `web.demo`, from
// POST /demo/session on this port.
//
// Automation hooks (stable, documented in web/README.md): <body> carries data-ekyc-state,
// data-ekyc-liveness, data-ekyc-pose during a pose step and, at the end,
// data-ekyc-decision; the document file input is #document-file, a step's #step-file.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { Decision, ReasonCode, type Reason } from "./gen/ekyc/v1/common_pb.js";
import { PoseStep, type ChallengeStep } from "./gen/ekyc/v1/liveness_pb.js";
import {
  EvidenceKind,
  FactorKind,
  Orchestrator,
  SessionState,
  type SessionProgress,
  type VerificationResult,
} from "./gen/ekyc/v1/orchestrator_pb.js";
import { FACTOR, POSE, REASON, TEXT, browserLang, type Lang, type Texts } from "./i18n.js";

/** Frames sent per second at most while a pose step runs (one in flight at a time). */
const FRAME_INTERVAL_MS = 300;
/** Challenge frames are downscaled to this width before JPEG encoding. */
const FRAME_MAX_WIDTH = 640;
/** Document photos taken with the camera: at most this width. */
const DOCUMENT_MAX_WIDTH = 1920;
/** Files larger than this are refused in the page (the server refuses them too). */
const MAX_FILE_BYTES = 8 * 1024 * 1024;

type State = "starting" | "camera" | `step-${number}` | "document" | "signature" | "finishing" | "decision" | "error";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

let lang: Lang = browserLang();
let t: Texts = TEXT[lang];
/** Re-renders the dynamic texts of what is on screen, after a language switch. */
let rerender: () => void = () => {};

class Failure extends Error {
  constructor(
    readonly text: (t: Texts) => string,
    readonly canRetry: boolean,
    /** Retrying needs a new (demo) session. */
    readonly renew = false,
  ) {
    super("failure");
  }
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

function setState(s: State) {
  document.body.dataset.ekycState = s;
}

function show(section: string) {
  for (const id of ["camera-view", "document-view", "signature-view", "decision-view", "error-view"]) {
    $(id).hidden = id !== section;
  }
  const heading = $(section).querySelector("h2") ?? $(section).querySelector("p");
  if (heading instanceof HTMLElement) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: false });
  }
}

function status(text: string) {
  $("status").textContent = text;
}

function clear(el: HTMLElement) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, cls?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function reasonText(r: Reason): string {
  return REASON[lang][r.code as ReasonCode] ?? (r.message || ReasonCode[r.code] || String(r.code));
}

function listReasons(list: HTMLElement, reasons: Reason[]) {
  clear(list);
  const seen = new Set<string>();
  for (const r of reasons) {
    const text = reasonText(r);
    if (seen.has(text)) continue;
    seen.add(text);
    const li = el("li", text, r.blocking ? "blocking" : "warning");
    li.dataset.code = ReasonCode[r.code] ?? String(r.code);
    list.appendChild(li);
  }
}

function applyTexts() {
  t = TEXT[lang];
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll<HTMLElement>("[data-text]")) {
    const v = t[e.dataset.text as keyof Texts];
    if (typeof v === "string") e.textContent = v;
  }
  const button = $("lang");
  button.textContent = t.switchLang;
  button.setAttribute("aria-label", t.switchLangLabel);
  $("preview").setAttribute("aria-label", t.cameraPreview);
  document.title = t.title;
  rerender();
}

async function readFile(input: HTMLInputElement): Promise<{ data: Uint8Array; type: string } | null> {
  const f = input.files?.[0];
  if (!f) return null;
  try {
    if (f.size > MAX_FILE_BYTES) {
      throw new ConnectError("file too large", Code.InvalidArgument);
    }
    return { data: new Uint8Array(await f.arrayBuffer()), type: f.type || "application/octet-stream" };
  } finally {
    input.value = "";
  }
}

async function grab(video: HTMLVideoElement, maxWidth: number, quality: number): Promise<Uint8Array | null> {
  const w = video.videoWidth;
  const h = video.videoHeight;
  if (!w || !h) return null;
  const scale = Math.min(1, maxWidth / w);
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(w * scale);
  canvas.height = Math.round(h * scale);
  const ctx = canvas.getContext("2d");
  if (!ctx) return null;
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise<Blob | null>((r) => canvas.toBlob(r, "image/jpeg", quality));
  return blob ? new Uint8Array(await blob.arrayBuffer()) : null;
}

function download(name: string, data: BlobPart, type: string) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([data], { type }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

// ---------------------------------------------------------------------------------------
// The session and its client
// ---------------------------------------------------------------------------------------

interface Handle {
  id: string;
  token: string;
  fromDemo: boolean;
}

/** The session handed over in the URL fragment, or a demo session, or none. */
async function obtainSession(): Promise<Handle | null> {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const id = fragment.get("session");
  const token = fragment.get("token");
  if (id && token) {
    // The token stays in memory only: not in the address bar, history or a bookmark.
    history.replaceState(null, "", location.pathname + location.search);
    return { id, token, fromDemo: false };
  }
  let r: Response;
  try {
    r = await fetch("/demo/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ locale: lang }),
      credentials: "omit",
    });
  } catch {
    throw new Failure((t) => t.network, true);
  }
  if (r.status === 404) return null;
  if (!r.ok) throw new Failure((t) => (r.status === 429 ? REASON[lang][ReasonCode.RATE_LIMITED]! : t.network), true);
  const j = (await r.json()) as { session_id: string; session_token: string };
  return { id: j.session_id, token: j.session_token, fromDemo: true };
}

function connect(handle: Handle): Client<typeof Orchestrator> {
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${handle.token}`);
    return next(req);
  };
  const transport = createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [auth] });
  return createClient(Orchestrator, transport);
}

/** What a failed call means for the person: something to fix or retry (returned, in
 * words), or the end of this session (thrown). */
function classify(e: unknown, handle: Handle): string {
  const err = ConnectError.from(e);
  const m = err.rawMessage;
  switch (err.code) {
    case Code.InvalidArgument:
      return REASON[lang][ReasonCode.IMAGE_CORRUPT]!;
    case Code.Unauthenticated:
      if (m.includes("expired")) throw new Failure((t) => t.sessionExpired, handle.fromDemo, true);
      throw new Failure((t) => t.sessionInvalid, handle.fromDemo, true);
    case Code.PermissionDenied:
    case Code.NotFound:
      throw new Failure((t) => t.sessionInvalid, handle.fromDemo, true);
    case Code.FailedPrecondition:
      if (m.startsWith("SESSION_EXPIRED") || m.includes("expired")) throw new Failure((t) => t.sessionExpired, handle.fromDemo, true);
      if (m.startsWith("EVIDENCE_MISSING")) return m;
      throw new Failure((t) => t.sessionDone, false);
    case Code.ResourceExhausted:
      if (m.startsWith("SESSION_LIMIT_REACHED")) throw new Failure((t) => t.tooManyAttempts, handle.fromDemo, true);
      return REASON[lang][ReasonCode.OVERLOADED]!;
    default:
      // Unavailable, a deadline, a dropped connection: worth another try with the next
      // frame or photo; the call that fails the session is the caller's to decide.
      console.warn(`call failed: ${Code[err.code]}: ${m}`);
      return t.network;
  }
}

// ---------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------

let handle: Handle | null = null;

async function run() {
  setState("starting");
  document.body.dataset.ekycLiveness = "pending";
  delete document.body.dataset.ekycDecision;
  status(t.starting);
  try {
    handle ??= await obtainSession();
    if (!handle) throw new Failure((t) => t.noSession, false);
    const h = handle;
    const client = connect(h);
    let progress: SessionProgress;
    try {
      progress = await client.getSession({ sessionId: h.id });
    } catch (e) {
      classify(e, h);
      throw e;
    }
    if (progress.state === SessionState.FINISHED && progress.result) return decision(progress.result, h);
    if (progress.state === SessionState.EXPIRED) throw new Failure((t) => t.sessionExpired, h.fromDemo, true);
    if (progress.state !== SessionState.COLLECTING) throw new Failure((t) => t.sessionInvalid, h.fromDemo, true);

    progress = await liveness(client, h, progress);
    const missing = (k: EvidenceKind) => progress.missing.find((m) => m.kind === k);
    if (missing(EvidenceKind.DOCUMENT)) progress = await documentStep(client, h, progress);
    // The signature step when the policy requires one, or accepts only with one (without
    // it staff review); not for a merely optional signature, which would ask the resident
    // for a signing app they may not have.
    const signature = missing(EvidenceKind.SIGNATURE);
    if (signature && (signature.required || progress.policy?.acceptRequiresSignature)) {
      progress = await signatureStep(client, h, progress, signature.required);
    }

    setState("finishing");
    status(t.finishing);
    let result: VerificationResult;
    try {
      result = await client.finish({ sessionId: h.id });
    } catch (e) {
      classify(e, h);
      throw e;
    }
    decision(result, h);
  } catch (e) {
    fail(e);
  }
}

function fail(e: unknown) {
  const f = e instanceof Failure ? e : new Failure((t) => t.network, true);
  if (!(e instanceof Failure)) console.error(`unexpected: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  setState("error");
  show("error-view");
  rerender = () => {
    $("error-message").textContent = f.text(t);
    status("");
  };
  rerender();
  const retry = $("retry");
  retry.hidden = !f.canRetry;
  retry.onclick = () => {
    if (f.renew) handle = null;
    void run();
  };
}

// --- Liveness: the pose challenge ------------------------------------------------------

async function liveness(client: Client<typeof Orchestrator>, h: Handle, progress: SessionProgress): Promise<SessionProgress> {
  const steps = progress.challenge?.steps ?? [];
  if (steps.length === 0 || progress.steps.every((s) => s.satisfied)) return progress;
  setState("camera");
  show("camera-view");
  status(t.cameraAsk);
  const video = $<HTMLVideoElement>("preview");
  let stream: MediaStream | null = null;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } },
      audio: false,
    });
    video.srcObject = stream;
    await video.play().catch(() => {});
    status("");
  } catch {
    video.hidden = true;
    status(t.cameraDenied);
  }
  const cameraMessage = stream ? "" : "cameraDenied";
  try {
    for (const step of steps) {
      if (progress.steps[step.index]?.satisfied) continue;
      setState(`step-${step.index}`);
      progress = await poseStep(client, h, step, steps.length, progress, video, stream, cameraMessage);
    }
  } finally {
    stream?.getTracks().forEach((tr) => tr.stop());
    video.srcObject = null;
    delete document.body.dataset.ekycPose;
  }
  return progress;
}

function renderSteps(steps: ChallengeStep[], progress: SessionProgress, current: number) {
  const list = $("steps");
  clear(list);
  for (const s of steps) {
    const done = progress.steps[s.index]?.satisfied;
    const li = el("li", `${POSE[lang][s.pose] ?? ""}${done ? ` — ${t.stepDone}` : ""}`, done ? "done" : s.index === current ? "current" : "");
    if (s.index === current) li.setAttribute("aria-current", "step");
    list.appendChild(li);
  }
}

function ring(fraction: number) {
  const r = $("ring") as unknown as SVGCircleElement;
  r.style.strokeDashoffset = String(100 - Math.round(Math.max(0, Math.min(1, fraction)) * 100));
}

function poseStep(
  client: Client<typeof Orchestrator>,
  h: Handle,
  step: ChallengeStep,
  count: number,
  progress: SessionProgress,
  video: HTMLVideoElement,
  stream: MediaStream | null,
  cameraMessage: string,
): Promise<SessionProgress> {
  let guidance = "";
  let reached = 0;
  const render = () => {
    $("step-counter").textContent = t.stepOf(step.index + 1, count);
    $("instruction").textContent = POSE[lang][step.pose] ?? step.instruction;
    $("guidance").textContent = guidance;
    const turning = step.pose !== PoseStep.FRONTAL && step.targetAngleDeg > 0;
    $("progress-text").textContent = turning ? t.progressLabel(Math.max(0, reached), step.targetAngleDeg) : "";
    if (cameraMessage) status(t.cameraDenied);
    renderSteps(progress.challenge?.steps ?? [], progress, step.index);
  };
  rerender = render;
  document.body.dataset.ekycPose = PoseStep[step.pose] ?? "";
  ring(0);
  render();

  return new Promise((resolve, reject) => {
    let done = false;
    let sending: Promise<unknown> = Promise.resolve();
    /** Sends one frame for this step (one at a time); true when the step is satisfied. */
    const send = (data: Uint8Array, contentType: string) => {
      const attempt = sending.then(async () => {
        if (done) return false;
        let p: SessionProgress;
        try {
          p = await client.addFrame({
            sessionId: h.id,
            frame: { image: { data, contentType }, stepIndex: step.index, clientCaptureUnixMs: BigInt(Date.now()), mirrored: false },
          });
        } catch (e) {
          guidance = classify(e, h);
          render();
          return false;
        }
        progress = p;
        const check = p.added.case === "frame" ? p.added.value : undefined;
        if (!check) return false;
        reached = check.reachedAngleDeg;
        const target = check.targetAngleDeg || step.targetAngleDeg;
        ring(check.stepSatisfied ? 1 : target > 0 ? reached / target : 0);
        const blocking = check.reasons.filter((r) => r.blocking);
        guidance = check.stepSatisfied ? t.stepDone : blocking.length ? reasonText(blocking[0]) : t.holdStill;
        render();
        return check.stepSatisfied;
      });
      sending = attempt.catch(() => false);
      return attempt;
    };
    const finish = () => {
      if (done) return;
      done = true;
      $<HTMLInputElement>("step-file").onchange = null;
      resolve(progress);
    };
    const stop = (e: unknown) => {
      if (done) return;
      done = true;
      reject(e);
    };
    $<HTMLInputElement>("step-file").onchange = async (ev) => {
      try {
        const f = await readFile(ev.target as HTMLInputElement);
        if (f && (await send(f.data, f.type))) finish();
      } catch (e) {
        if (e instanceof Failure) stop(e);
        else {
          guidance = classify(e, h);
          render();
        }
      }
    };
    if (!stream) return;
    void (async () => {
      while (!done) {
        const started = performance.now();
        const jpeg = await grab(video, FRAME_MAX_WIDTH, 0.9);
        if (jpeg && !done && (await send(jpeg, "image/jpeg"))) return finish();
        await sleep(Math.max(0, FRAME_INTERVAL_MS - (performance.now() - started)));
      }
    })().catch(stop);
  });
}

// --- The ID document -------------------------------------------------------------------

function documentStep(client: Client<typeof Orchestrator>, h: Handle, progress: SessionProgress): Promise<SessionProgress> {
  setState("document");
  show("document-view");
  status("");
  let result = "";
  let reasons: Reason[] = [];
  const render = () => {
    $("document-result").textContent = result;
    listReasons($("document-problems"), reasons);
  };
  rerender = render;
  render();
  return new Promise((resolve, reject) => {
    let busy = false;
    let camera: MediaStream | null = null;
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    const submit = async (data: Uint8Array, contentType: string) => {
      if (busy) return;
      busy = true;
      result = t.documentChecking;
      reasons = [];
      render();
      try {
        const p = await client.addDocument({ sessionId: h.id, image: { data, contentType } });
        const check = p.added.case === "document" ? p.added.value : undefined;
        if (check?.usable) {
          result = t.documentOk;
          render();
          camera?.getTracks().forEach((tr) => tr.stop());
          resolve(p);
          return;
        }
        result = t.documentRetry;
        reasons = check?.reasons.filter((r) => r.blocking) ?? [];
        if (reasons.length === 0) reasons = check?.reasons ?? [];
      } catch (e) {
        if (e instanceof Failure) return reject(e);
        try {
          result = classify(e, h);
        } catch (f) {
          return reject(f);
        }
      } finally {
        busy = false;
      }
      render();
    };
    $<HTMLInputElement>("document-file").onchange = async (ev) => {
      try {
        const f = await readFile(ev.target as HTMLInputElement);
        if (f) await submit(f.data, f.type);
      } catch (e) {
        reject(e);
      }
    };
    $("document-capture").onclick = async () => {
      try {
        if (!camera) {
          camera = await navigator.mediaDevices.getUserMedia({
            video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 } },
            audio: false,
          });
          video.srcObject = camera;
          await video.play();
          await sleep(500);
        }
        const jpeg = await grab(video, DOCUMENT_MAX_WIDTH, 0.92);
        if (jpeg) await submit(jpeg, "image/jpeg");
      } catch {
        result = t.cameraDenied;
        render();
      }
    };
  });
}

// --- The signature ---------------------------------------------------------------------

/** DER certificates from PEM text (all blocks) or from one DER file. */
function certificates(data: Uint8Array): Uint8Array[] {
  const text = new TextDecoder("ascii", { fatal: false }).decode(data);
  const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)];
  if (blocks.length === 0) return [data];
  return blocks.map((b) => Uint8Array.from(atob(b[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0)));
}

function signatureStep(
  client: Client<typeof Orchestrator>,
  h: Handle,
  progress: SessionProgress,
  required: boolean,
): Promise<SessionProgress> {
  setState("signature");
  show("signature-view");
  status("");
  let result = "";
  let reasons: Reason[] = [];
  const render = () => {
    $("signature-result").textContent = result;
    listReasons($("signature-problems"), reasons);
  };
  rerender = render;
  render();
  $("signature-skip").hidden = required;
  $("signature-data").onclick = () => download(`to-be-signed-${h.id}.txt`, progress.toBeSigned as Uint8Array<ArrayBuffer>, "text/plain");
  return new Promise((resolve, reject) => {
    $("signature-skip").onclick = () => resolve(progress);
    $("signature-send").onclick = async () => {
      try {
        const sig = await readFile($<HTMLInputElement>("signature-file"));
        const chainInput = $<HTMLInputElement>("signature-chain");
        const chain: Uint8Array[] = [];
        for (const f of Array.from(chainInput.files ?? [])) chain.push(...certificates(new Uint8Array(await f.arrayBuffer())));
        chainInput.value = "";
        if (!sig || chain.length === 0) {
          result = t.signatureBad;
          reasons = [];
          render();
          return;
        }
        const algorithm = $<HTMLSelectElement>("signature-algorithm").value;
        const p = await client.addSignature({
          sessionId: h.id,
          signature: { certificateChain: chain, signature: sig.data, signatureAlgorithm: algorithm },
        });
        const check = p.added.case === "signature" ? p.added.value : undefined;
        if (check?.valid) {
          result = t.signatureOk;
          render();
          resolve(p);
          return;
        }
        result = t.signatureBad;
        reasons = check?.reasons ?? [];
        render();
      } catch (e) {
        if (e instanceof Failure) return reject(e);
        try {
          result = classify(e, h);
          render();
        } catch (f) {
          reject(f);
        }
      }
    };
  });
}

// --- The decision ----------------------------------------------------------------------

function decision(r: VerificationResult, h: Handle) {
  setState("decision");
  document.body.dataset.ekycDecision = Decision[r.decision] ?? "UNSPECIFIED";
  const live = r.factors.find((f) => f.kind === FactorKind.LIVENESS);
  document.body.dataset.ekycLiveness = live ? (live.passed ? "passed" : "failed") : "failed";
  show("decision-view");
  status("");
  const render = () => {
    const d = $("decision");
    d.textContent = t.decision[r.decision] ?? t.decision[Decision.UNSPECIFIED];
    d.className = `decision ${(Decision[r.decision] ?? "").toLowerCase()}`;
    // The decision's reasons, then the failed factors' own (deduplicated in words).
    const reasons = [...r.reasons, ...r.factors.filter((f) => !f.passed).flatMap((f) => f.reasons)];
    listReasons($("reasons"), reasons);
    $("reasons-heading").hidden = reasons.length === 0;
    const body = $("factors").querySelector("tbody")!;
    clear(body);
    for (const f of r.factors) {
      const row = el("tr");
      row.appendChild(el("th", FACTOR[lang][f.kind] ?? FactorKind[f.kind]));
      row.appendChild(el("td", `${t.score} ${Math.round(f.score * 100)}%`));
      row.appendChild(el("td", f.passed ? t.factorPassed : t.factorFailed, f.passed ? "passed" : "failed"));
      body.appendChild(row);
    }
  };
  rerender = render;
  render();
  const link = $<HTMLAnchorElement>("evidence-download");
  const ev = r.evidence;
  link.hidden = !ev;
  if (ev) {
    const record = { session_id: h.id, evidence_jws: ev.evidenceJws, key_id: ev.keyId, algorithm: ev.algorithm };
    link.href = URL.createObjectURL(new Blob([JSON.stringify(record, null, 2) + "\n"], { type: "application/json" }));
    link.download = `evidence-${h.id}.json`;
  }
}

// ---------------------------------------------------------------------------------------

$("lang").onclick = () => {
  lang = lang === "ja" ? "en" : "ja";
  applyTexts();
};
applyTexts();
void run();
