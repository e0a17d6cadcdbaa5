// The page in Chromium: a whole session with the (fake) camera to a decision, a bad
// document photo and its retry, the camera refused (file uploads instead), an expired
// session, the two languages, and the CSP refusing inline script.
import assert from "node:assert/strict";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ARTEFACTS, env, launch, open, record, state, waitFor, watch } from "./helpers.mjs";

const POSE_FILE = { FRONTAL: "front", TURN_LEFT: "left", TURN_RIGHT: "right", LOOK_UP: "up", LOOK_DOWN: "down" };

test("a whole session with the camera reaches a decision; a bad document is explained and retried", async () => {
  const browser = await launch({ camera: "video" });
  try {
    const cdp = await browser.target().createCDPSession();
    await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: ARTEFACTS });
    const started = Date.now();
    const { page, problems } = await open(browser, "/");
    const shots = watch(page, "session");
    // The pose steps advance by themselves as the video turns the head.
    await waitFor(page, () => ["document", "error"].includes(document.body.dataset.ekycState), 240_000);
    const poseDone = Date.now();
    assert.equal(await state(page), "document", `${await page.$eval("#error-message", (e) => e.textContent)} ${problems}`);
    const steps = shots.seen.filter((s) => s.startsWith("step-"));
    assert.ok(steps.length >= 2, `every pose step was shown: ${shots.seen}`);

    // A selfie is not a document: the problems are shown in words, then the card passes.
    const input = await page.$("#document-file");
    await input.uploadFile(env("EKYC_BAD_DOCUMENT"));
    await waitFor(page, () => document.querySelectorAll("#document-problems li").length > 0 || document.body.dataset.ekycState === "error", 60_000);
    assert.equal(await state(page), "document", `${await page.$eval("#error-message", (e) => e.textContent)} ${problems}`);
    const problemsText = await page.$$eval("#document-problems li", (l) => l.map((e) => e.textContent));
    assert.ok(problemsText.every((t) => t.length > 5), problemsText.join(" | "));
    await page.screenshot({ path: join(ARTEFACTS, "session-document-problems.png"), fullPage: true });
    assert.equal(await state(page), "document");
    await (await page.$("#document-file")).uploadFile(env("EKYC_CARD"));

    await waitFor(page, () => document.body.dataset.ekycDecision !== undefined || document.body.dataset.ekycState === "error", 120_000);
    const decided = Date.now();
    await shots.stop();
    await page.screenshot({ path: join(ARTEFACTS, "session-decision.png"), fullPage: true });
    // The record first: it says why, whatever the decision.
    await page.click("#evidence-download");
    const deadline = Date.now() + 10_000;
    let file;
    while (!file && Date.now() < deadline) {
      file = readdirSync(ARTEFACTS).find((f) => f.startsWith("evidence-") && f.endsWith(".json"));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(file, "the evidence record was downloaded");
    const evidence = JSON.parse(readFileSync(join(ARTEFACTS, file), "utf8"));
    assert.equal(evidence.evidence_jws.split(".").length, 3);
    const body = await page.evaluate(() => ({ ...document.body.dataset }));
    assert.equal(body.ekycState, "decision", JSON.stringify(body));
    // The same person's photo on the card, every pose reached: accepted (PAD is off in this
    // suite: the frames are rendered from a still photo).
    assert.equal(body.ekycDecision, "ACCEPT", await page.$$eval("#reasons li", (l) => l.map((e) => `${e.dataset.code}: ${e.textContent}`).join("; ")));
    assert.equal(body.ekycLiveness, "passed");
    const factors = await page.$$eval("#factors tr", (rows) => rows.length);
    assert.ok(factors >= 3, "the factors are listed");

    assert.deepEqual(problems, [], "no script errors or CSP violations");
    const timing = { pose_steps_s: (poseDone - started) / 1000, whole_session_s: (decided - started) / 1000, states: shots.seen };
    record("timing.json", timing);
    console.log(`# full session in the browser: ${JSON.stringify(timing)}`);
  } finally {
    await browser.close();
  }
});

test("a session handed over by the operator, whose policy requires a signature, takes the signature as files", async () => {
  const browser = await launch({ camera: "video" });
  try {
    const cdp = await browser.target().createCDPSession();
    const downloads = join(ARTEFACTS, "signature-download");
    mkdirSync(downloads, { recursive: true });
    await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: downloads });
    const fragment = `#session=${encodeURIComponent(env("EKYC_SIGN_SESSION"))}&token=${encodeURIComponent(env("EKYC_SIGN_TOKEN"))}`;
    const { page, problems } = await open(browser, `/${fragment}`);
    const shots = watch(page, "signature");
    await waitFor(page, () => ["document", "error"].includes(document.body.dataset.ekycState), 240_000);
    await (await page.$("#document-file")).uploadFile(env("EKYC_CARD"));
    await waitFor(page, () => ["signature", "error"].includes(document.body.dataset.ekycState), 60_000);
    assert.equal(await state(page), "signature", `${await page.$eval("#error-message", (e) => e.textContent)} ${problems}`);

    // The bytes to sign, offered for download, are the session's own.
    await page.click("#signature-data");
    const deadline = Date.now() + 10_000;
    let file;
    while (!file && Date.now() < deadline) {
      file = readdirSync(downloads, { withFileTypes: true }).find((f) => f.name.startsWith("to-be-signed-") && f.name.endsWith(".txt"))?.name;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(file, "the bytes to sign were downloaded");
    assert.deepEqual(readFileSync(join(downloads, file)), readFileSync(env("EKYC_TO_BE_SIGNED")));

    await (await page.$("#signature-file")).uploadFile(env("EKYC_SIGNATURE"));
    await (await page.$("#signature-chain")).uploadFile(...env("EKYC_CHAIN").split(","));
    await page.select("#signature-algorithm", "RSA_PKCS1_SHA256");
    await page.click("#signature-send");
    await waitFor(page, () => document.body.dataset.ekycDecision !== undefined || document.body.dataset.ekycState === "error", 120_000);
    await shots.stop();
    await page.screenshot({ path: join(ARTEFACTS, "signature-decision.png"), fullPage: true });
    assert.equal(await page.evaluate(() => document.body.dataset.ekycDecision), "ACCEPT", await page.$eval("#reasons", (e) => e.textContent));
    const rows = await page.$$eval("#factors tr", (r) => r.map((e) => e.textContent));
    assert.ok(rows.some((r) => /Digital signature.*passed/.test(r)), rows.join(" | "));
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});

test("with the camera refused the page says so and takes a photo file for each step", async () => {
  const browser = await launch({ camera: "denied" });
  try {
    const { page, problems } = await open(browser, "/");
    await waitFor(page, () => (document.body.dataset.ekycState ?? "").startsWith("step-"), 60_000);
    await waitFor(page, () => (document.getElementById("status").textContent ?? "").length > 0, 10_000);
    const message = await page.$eval("#status", (e) => e.textContent);
    assert.match(message, /camera cannot be used/i);
    await page.screenshot({ path: join(ARTEFACTS, "denied-01-step.png"), fullPage: true });
    for (let i = 0; i < 8 && (await state(page)).startsWith("step-"); i++) {
      const before = await state(page);
      const pose = await page.evaluate(() => document.body.dataset.ekycPose);
      assert.ok(POSE_FILE[pose], `a known pose: ${pose}`);
      await (await page.$("#step-file")).uploadFile(join(env("EKYC_POSES"), `${POSE_FILE[pose]}.jpg`));
      await waitFor(page, (b) => document.body.dataset.ekycState !== b, 60_000, before);
    }
    assert.equal(await state(page), "document", "every step was satisfied from files");
    await page.screenshot({ path: join(ARTEFACTS, "denied-02-document.png"), fullPage: true });
    assert.deepEqual(problems.filter((p) => !/Permission|NotAllowed/i.test(p)), []);
  } finally {
    await browser.close();
  }
});

test("an expired session ends in an error that says so", async () => {
  const browser = await launch({ camera: "video" });
  try {
    const fragment = `#session=${encodeURIComponent(env("EKYC_EXPIRED_SESSION"))}&token=${encodeURIComponent(env("EKYC_EXPIRED_TOKEN"))}`;
    const { page } = await open(browser, `/${fragment}`);
    await waitFor(page, () => document.body.dataset.ekycState === "error", 30_000);
    const text = await page.$eval("#error-message", (e) => e.textContent);
    assert.equal(text, "This verification has expired. Please start again.");
    assert.equal(await page.evaluate(() => location.hash), "", "the token is taken out of the address bar");
    await page.screenshot({ path: join(ARTEFACTS, "expired-error.png"), fullPage: true });
  } finally {
    await browser.close();
  }
});

test("Japanese for a Japanese browser, English otherwise, and a switch", async () => {
  const browser = await launch({ camera: "video", lang: "ja-JP" });
  try {
    const { page } = await open(browser, "/", { lang: "ja-JP" });
    await waitFor(page, () => (document.body.dataset.ekycState ?? "").startsWith("step-"), 60_000);
    const ja = await page.evaluate(() => ({
      lang: document.documentElement.lang,
      title: document.getElementById("title").textContent,
      instruction: document.getElementById("instruction").textContent,
      upload: document.querySelector("label[for=step-file]").textContent,
    }));
    assert.equal(ja.lang, "ja");
    assert.equal(ja.title, "本人確認");
    assert.match(ja.instruction, /[ぁ-んァ-ン一-龥]/, ja.instruction);
    assert.match(ja.upload, /写真/);
    await page.screenshot({ path: join(ARTEFACTS, "lang-ja.png"), fullPage: true });
    await page.focus("#lang");
    await page.keyboard.press("Enter");
    const en = await page.evaluate(() => ({
      lang: document.documentElement.lang,
      title: document.getElementById("title").textContent,
      instruction: document.getElementById("instruction").textContent,
    }));
    assert.deepEqual([en.lang, en.title], ["en", "Identity verification"]);
    assert.match(en.instruction, /^(Look|Turn)/, en.instruction);
    await page.screenshot({ path: join(ARTEFACTS, "lang-en.png"), fullPage: true });
  } finally {
    await browser.close();
  }
  const english = await launch({ camera: "video", lang: "en-US" });
  try {
    const { page } = await open(english, "/", { lang: "en-US" });
    await waitFor(page, () => document.getElementById("title").textContent.length > 0, 20_000);
    assert.equal(await page.$eval("#title", (e) => e.textContent), "Identity verification");
  } finally {
    await english.close();
  }
});

test("the CSP refuses inline script and the page works without it", async () => {
  const browser = await launch({ camera: "video" });
  try {
    const { page, problems } = await open(browser, "/");
    await waitFor(page, () => document.getElementById("title").textContent.length > 0, 20_000);
    const ran = await page.evaluate(() => {
      window.__inline = false;
      const s = document.createElement("script");
      s.textContent = "window.__inline = true";
      document.body.appendChild(s);
      return window.__inline;
    }).catch(() => false);
    assert.equal(ran, false, "an inline script ran");
    const sink = await page.evaluate(() => {
      try {
        document.body.insertAdjacentHTML("beforeend", "<img src=x>");
        return "allowed";
      } catch (e) {
        return e.name;
      }
    });
    assert.equal(sink, "TypeError", "Trusted Types guard the HTML sinks");
    // An inline event handler is inline script too: refused by script-src 'self'.
    const handler = await page.evaluate(() => {
      window.__handler = false;
      const b = document.createElement("button");
      try {
        b.setAttribute("onclick", "window.__handler = true");
      } catch {
        // Trusted Types refuse the string before script-src would.
      }
      document.body.appendChild(b);
      b.click();
      b.remove();
      return window.__handler;
    });
    assert.equal(handler, false, "an inline event handler ran");
    assert.ok(problems.some((p) => /TrustedScript|TrustedHTML/.test(p)), problems.join("\n"));
  } finally {
    await browser.close();
  }
});
