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
// KESSAI_CONSOLE_PASSWORDS (`NAME ROLE PASSWORD` lines), KESSAI_ARTIFACTS,
// KESSAI_DEMO_CARD (the demo card's id, reported lost at the end).
//
// Then the work queues: the approver counts the demo member's envelope of
// cash; the viewer is refused returning the stray transfer in suspense and
// the approver returns it; the approver corrects the bank account of a
// store whose payout the bank rejected; the approver reports the demo card
// lost; the viewer opens the differences queue, searches prepaid payments
// by amount, and reads the statistics (charts, and the PDF report).

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
const demoCard = env("KESSAI_DEMO_CARD");
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

  // Cash by registered mail: the approver counts the demo member's
  // envelope; below the dual-control limit, one count issues it.
  await approver.goto(`${center}/console/cash`);
  const envelope = approver.locator("#cash tbody tr", { hasText: "JPY 10,000" }).first();
  await step(approver, "cash-queue", async () => {
    result.cash_funding = (await envelope.locator("td code").first().innerText()).trim();
    await envelope.getByLabel(/^Counted/).fill("10000");
  });
  await follow(approver, envelope.getByRole("button", { name: "Record count" }));
  await step(approver, "cash-counted", async () => {
    if ((await text(approver, "main")).includes(result.cash_funding)) throw new Error("the envelope still waits");
  });

  // A transfer that quoted nothing: the viewer may not send it back; the
  // approver does, saying how.
  const stray = (page) => page.locator("#credits tbody tr", { hasText: "SUZUKI ICHIRO" });
  await viewer.goto(`${center}/console/bank-credits`);
  await step(viewer, "viewer-credits", async () => {
    await stray(viewer).getByLabel("How it was returned").fill("the viewer tries");
  });
  await follow(viewer, stray(viewer).getByRole("button", { name: "Return" }));
  await step(viewer, "viewer-return-refused", async () => {
    result.return_refused = await expectText(viewer, "#refused", "needs the approver role");
  });
  await approver.goto(`${center}/console/bank-credits`);
  await step(approver, "approver-credits", async () => {
    await stray(approver).getByLabel("How it was returned").fill("sent back to the remitter's account");
  });
  await follow(approver, stray(approver).getByRole("button", { name: "Return" }));
  await step(approver, "credit-returned", async () => {
    if ((await text(approver, "main")).includes("SUZUKI ICHIRO")) throw new Error("still in suspense");
  });

  // A payout the bank rejected: the approver corrects the store's account.
  await approver.goto(`${center}/console/payouts`);
  const failed = approver.locator("#failed-payouts tbody tr").first();
  await step(approver, "failed-payouts", async () => {
    await expectText(approver, "#failed-payouts", "it would fail again");
    result.failed_payout = (await failed.locator("td code").first().innerText()).trim();
    await failed.getByLabel(/^New account for/).fill("zengin:0001-100-1-0000099:ﾃﾞﾓ ｼﾖｳﾃﾝ");
    await failed.getByLabel(/^Why, for/).fill("the store sent its new account");
  });
  await follow(approver, failed.getByRole("button", { name: "Correct" }));
  await step(approver, "account-corrected", async () => {
    const queue = await text(approver, "#failed-payouts");
    if (queue.includes("it would fail again")) throw new Error("still the account that failed");
    if (!queue.includes("0000099")) throw new Error("the new account is not shown");
  });

  // The cardholder calls: the demo card is reported lost.
  await approver.goto(`${center}/console/lost-cards`);
  await step(approver, "lost-cards", async () => {
    await approver.getByLabel("Card", { exact: true }).fill(demoCard);
    await approver.getByLabel("Reason", { exact: true }).fill("the cardholder called: lost on the train");
  });
  await follow(approver, approver.getByRole("button", { name: "Report" }));
  await step(approver, "card-reported", async () => {
    const row = approver.locator("#lost-cards tbody tr", { hasText: demoCard }).first();
    result.lost_card = (await row.innerText()).replace(/\s+/g, " ").trim();
  });

  // What the examination of card logs found (nothing, in the demo).
  await viewer.goto(`${center}/console/differences`);
  await step(viewer, "differences", async () => {
    result.differences = (await text(viewer, "main")).includes("No difference") ? "none open" : "listed";
  });

  // A search of another kind, by amount.
  await viewer.goto(`${center}/console?kind=prepaid-payments&min=1000&max=2000`);
  await step(viewer, "search-prepaid", async () => {
    const amounts = await viewer.locator("#prepaid-payments tbody tr td:nth-child(6)").allInnerTexts();
    if (amounts.length < 1) throw new Error("no prepaid payment listed");
    result.prepaid_payments = amounts.map((a) => a.trim());
  });

  // The statistics: tables and charts, and the printable report.
  await viewer.goto(`${center}/console/statistics`);
  await step(viewer, "statistics", async () => {
    await expectText(viewer, "h1", "Statistics");
    const bars = await viewer.locator("#chart-sales rect").count();
    if (bars < 2) throw new Error(`the sales chart has ${bars} shapes`);
    result.statistics_total = (await text(viewer, "#by-period tfoot")).replace(/\s+/g, " ").trim();
    result.stores = await viewer.locator("#by-store tbody tr").count();
  });
  const pdfHref = await viewer.getByRole("link", { name: "Printable report (PDF)" }).getAttribute("href");
  const pdf = await viewer.request.get(`${center}${pdfHref}`);
  const body = await pdf.body();
  result.pdf = { status: pdf.status(), type: pdf.headers()["content-type"], bytes: body.length };
  if (!body.subarray(0, 5).equals(Buffer.from("%PDF-"))) throw new Error("the report is not a PDF");
} catch (e) {
  result.ok = false;
  result.error = e.message;
} finally {
  result.steps = steps;
  await browser.close();
}
console.log(JSON.stringify(result, null, 2));
process.exit(result.ok ? 0 : 1);
