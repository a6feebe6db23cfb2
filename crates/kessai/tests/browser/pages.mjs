// What the browser scripts (purchase.mjs, console.mjs) do to a page: read
// an element's text, insist on it, and follow a click to the next page,
// each bounded in time.

// Each wait is bounded; the store's completion page waits for the center's
// delivery sweep (1 s in `kessai up`).
export const STEP_TIMEOUT_MS = 30_000;

export async function text(page, selector) {
  return (await page.locator(selector).first().innerText({ timeout: STEP_TIMEOUT_MS })).trim();
}

export async function expectText(page, selector, wanted) {
  const seen = await text(page, selector);
  if (!seen.includes(wanted)) throw new Error(`${selector} shows ${JSON.stringify(seen)}, not ${JSON.stringify(wanted)}`);
  return seen;
}

// Clicks and waits for the page the click leads to.
export async function follow(page, locator) {
  await Promise.all([page.waitForNavigation({ timeout: STEP_TIMEOUT_MS }), locator.click()]);
}
