// The operator's console in a real Chromium (#22): each operator's browser
// presents its own client certificate. A person applies on the center's
// sign-up page; the viewer logs in, searches settlements, opens a card's
// story, and is refused when it tries to reject the application; the
// approver rejects it, and the operator trail shows who did what, before
// and after. Run by crates/kessai/tests/it/browser.rs against `kessai up`;
// prints one JSON object and exits non-zero on failure. A screenshot of
// every step goes to KESSAI_ARTIFACTS.
//
// Environment: KESSAI_CHROMIUM, KESSAI_NODE_MODULES, KESSAI_CENTER_URL,
// KESSAI_CA_DIR (the operators' certificates and keys),
// KESSAI_CONSOLE_PASSWORDS (`NAME ROLE PASSWORD` lines), KESSAI_ARTIFACTS.

import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import { STEP_TIMEOUT_MS, expectText, follow, text } from "./pages.mjs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const { chromium } = createRequire(join(env("KESSAI_NODE_MODULES"), "index.js"))("playwright-core");
const center = env("KESSAI_CENTER_URL");
const ca = env("KESSAI_CA_DIR");
const artifacts = env("KESSAI_ARTIFACTS");
mkdirSync(artifacts, { recursive: true });
const passwords = Object.fromEntries(
  readFileSync(env("KESSAI_CONSOLE_PASSWORDS"), "utf8")
    .trim()
    .split("\n")
    .map((line) => line.split(" "))
    .map(([name, role, password]) => [name, { role, password }]),
);
const steps = [];

async function step(page, label, check) {
  const file = join(artifacts, `console-${String(steps.length + 1).padStart(2, "0")}-${label}.png`);
  try {
    const seen = (await check()) ?? {};
    await page.screenshot({ path: file, fullPage: true });
    steps.push({ step: label, url: page.url(), screenshot: file, ...seen });
  } catch (e) {
    await page.screenshot({ path: file.replace(/\.png$/, "-failed.png"), fullPage: true }).catch(() => {});
    throw new Error(`${label} at ${page.url()}: ${e.message}`);
  }
}

const browser = await chromium.launch({
  executablePath: env("KESSAI_CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
});

// A browser of operator `name`: its certificate is presented to the center.
async function operatorPage(name) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true,
    viewport: { width: 1200, height: 800 },
    clientCertificates: [{ origin: center, certPath: join(ca, `${name}.crt`), keyPath: join(ca, `${name}.key`) }],
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  return page;
}

async function logIn(page, name, label) {
  await page.goto(`${center}/console`);
  await step(page, `${label}-login`, async () => {
    await expectText(page, "h1", "Log in");
    await expectText(page, "main", name);
    await page.getByLabel("Operator").fill(name);
    await page.getByLabel("Password").fill(passwords[name].password);
  });
  await follow(page, page.getByRole("button", { name: "Log in" }));
}

const result = { ok: true };
try {
  // A person applies (the public sign-up page needs no certificate).
  const viewer = await operatorPage("viewer");
  await viewer.goto(`${center}/members/apply`);
  await viewer.getByLabel("Name (or the store's name)").fill("Goro Mori");
  await viewer.getByLabel(/^Postal address or e-mail/).fill("goro@example.jp");
  await follow(viewer, viewer.getByRole("button", { name: "Apply" }));
  result.application = await text(viewer, "#application");

  await logIn(viewer, "viewer", "viewer");
  await step(viewer, "search", async () => {
    await expectText(viewer, "h1", "Search");
    await expectText(viewer, "header", "viewer (viewer)");
    result.settlements = await viewer.locator("#settlements tbody tr").count();
    if (result.settlements < 1) throw new Error("no settlement listed");
  });
  // Search by state: only completed settlements.
  await viewer.getByLabel("State").fill("completed");
  await follow(viewer, viewer.getByRole("button", { name: "Search" }));
  await step(viewer, "search-completed", async () => {
    const phases = await viewer.locator("#settlements tbody tr td:nth-child(7)").allInnerTexts();
    if (phases.length < 1 || phases.some((p) => p.trim() !== "completed")) throw new Error(`phases ${phases}`);
    result.completed = phases.length;
  });
  await follow(viewer, viewer.locator("#settlements tbody tr td a").first());
  await step(viewer, "card-story", async () => {
    await expectText(viewer, "h1", "Card ");
    result.card_books = await text(viewer, "main dl");
  });
  await viewer.goto(`${center}/console/applications`);
  const row = (page) => page.locator("#applications tbody tr", { hasText: result.application });
  await step(viewer, "viewer-queue", async () => {
    await expectText(viewer, "#applications", result.application);
    await row(viewer).getByLabel("Reason for rejecting").fill("the viewer tries");
  });
  await follow(viewer, row(viewer).getByRole("button", { name: "Reject" }));
  await step(viewer, "viewer-refused", async () => {
    result.viewer_refused = await expectText(viewer, "#refused", "Your role (viewer) may not do this");
  });

  const approver = await operatorPage("admin");
  await logIn(approver, "admin", "approver");
  await approver.goto(`${center}/console/applications`);
  await step(approver, "approver-queue", async () => {
    await expectText(approver, "#applications", result.application);
    await row(approver).getByLabel("Reason for rejecting").fill("a duplicate of an earlier application");
  });
  await follow(approver, row(approver).getByRole("button", { name: "Reject" }));
  await step(approver, "rejected", async () => {
    const queue = await text(approver, "main");
    if (queue.includes(result.application)) throw new Error("still in the queue");
  });
  await approver.goto(`${center}/console/trail`);
  await step(approver, "trail", async () => {
    result.chain = await expectText(approver, "#chain", "The trail's chain is whole");
    const trailRow = approver.locator("#trail tbody tr", { hasText: result.application }).first();
    result.trail_row = (await trailRow.innerText()).replace(/\s+/g, " ").trim();
  });
  // The outbox: the viewer sees that letters wait, not their codes; the
  // approver reads one and marks it sent.
  await viewer.goto(`${center}/console/outbox`);
  await step(viewer, "viewer-letters", async () => {
    const letters = await text(viewer, "#letters");
    if (letters.includes("activation code")) throw new Error("a viewer reads an activation code");
    result.letters_waiting = await viewer.locator("#letters tbody tr").count();
  });
  await approver.goto(`${center}/console/outbox`);
  const letter = approver.locator("#letters tbody tr").first();
  await step(approver, "approver-letters", async () => {
    await expectText(approver, "#letters", "activation code");
    result.letter = (await letter.locator("td code").first().innerText()).trim();
  });
  await follow(approver, letter.getByRole("button", { name: "Mark sent" }));
  await step(approver, "letter-sent", async () => {
    if ((await text(approver, "main")).includes(result.letter)) throw new Error("still waiting");
  });
  // The viewer sees the approver's change in the trail too.
  await viewer.goto(`${center}/console/trail?subject=${result.application}`);
  await step(viewer, "viewer-trail", async () => {
    result.viewer_trail = (await text(viewer, "#trail tbody")).replace(/\s+/g, " ");
  });
} catch (e) {
  result.ok = false;
  result.error = e.message;
} finally {
  result.steps = steps;
  await browser.close();
}
console.log(JSON.stringify(result, null, 2));
process.exit(result.ok ? 0 : 1);
