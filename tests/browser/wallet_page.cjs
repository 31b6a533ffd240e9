// The reference wallet page in a real (headless) Chromium, driven as a
// traveler would: sign in, save a card by keyboard alone (refused until the
// PSD2 consent is ticked), save another, make it the default, delete one
// after confirming, verify the phone, then complete 3-D Secure on the page the
// email links to. axe-core checks every page against WCAG 2.1 A and AA, at
// desktop size and at 375×812; screenshots go to the directory given.
//
//   node wallet_page.cjs <page URL> <screenshot dir> <booking id> <twilio fake URL> <phone number>
// prints one JSON object with what it saw, for the Rust test to judge.
// CommonJS, so that NODE_PATH finds playwright-core where the project installs it.
const { chromium } = require("playwright-core");
const { AxeBuilder } = require("@axe-core/playwright");
const path = require("node:path");

const [base, shots, bookingId, twilio, phoneNumber] = process.argv.slice(2);
const seen = { axe: {}, dialogs: [], console_errors: [], csp_violations: [] };

async function axe(page, name) {
  const result = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  seen.axe[name] = result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.map((n) => n.target.join(" ")),
  }));
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

/** Tabs (keyboard only) until the focused element matches `selector`. */
async function tabTo(page, selector, limit = 40) {
  for (let i = 0; i < limit; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press("Tab");
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** Types into the card Element's fields by keyboard, moving on by Tab where
 * the Element does not move on by itself. */
async function typeCard(page, number) {
  for (const [field, value] of [["number", number], ["exp_month", "12"], ["exp_year", "33"], ["cvc", "123"], ["postal_code", "75001"]]) {
    await tabTo(page, `#card-element input[placeholder=${field}]`, 5);
    await page.keyboard.type(value);
  }
}

async function cardsShown(page) {
  return page.$$eval("#cards .card-title", (titles) => titles.map((t) => t.textContent));
}

/** Waits for the wallet to show `count` cards, and for the profile's refresh
 * that follows a wallet change to land (it re-renders that section). */
async function waitForCards(page, count) {
  await page.waitForFunction((n) => document.querySelectorAll("#cards .card").length === n, count, { timeout: 20000 });
  await page.waitForLoadState("networkidle");
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.on("dialog", async (dialog) => {
      seen.dialogs.push(dialog.message());
      await dialog.dismiss();
    });
    page.on("console", (message) => {
      if (message.type() === "error") seen.console_errors.push(message.text());
      if (/Content Security Policy|Refused to/.test(message.text())) seen.csp_violations.push(message.text());
    });
    page.on("pageerror", (error) => seen.console_errors.push(String(error)));

    // Signed out, then in.
    const response = await page.goto(base);
    seen.csp = response.headers()["content-security-policy"] ?? null;
    await page.waitForSelector("#sign-in");
    await axe(page, "sign_in");
    await shot(page, "sign-in");
    await page.click("#sign-in");
    await page.waitForSelector("#completion");
    await page.waitForSelector("#cards, #no-cards");
    seen.greeting = await page.textContent("#greeting").catch(() => null);
    seen.score_before = Number(await page.getAttribute("#completion", "value"));
    seen.recommendations = await page.$$eval("#recommendations li", (items) => items.map((i) => i.textContent));
    seen.expired_flagged = await page.$$eval("#cards .card", (cards) =>
      cards.filter((c) => c.querySelector(".badge.expired")).map((c) => c.querySelector(".card-title").firstChild.textContent)
    );

    // A card by keyboard alone: the consent box first left unticked.
    await page.focus("body");
    await tabTo(page, "#add-card-button");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#card-element input[placeholder=number]");
    await page.waitForFunction(() => !document.getElementById("save-card").disabled);
    await typeCard(page, "4242424242424242");
    await tabTo(page, "#save-card");
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.getElementById("add-card-error").textContent !== "");
    seen.consent_refused = await page.textContent("#add-card-error");
    seen.focus_after_refusal = await page.evaluate(() => document.activeElement?.id);
    seen.cards_while_refused = await page.$$eval("#cards .card", (cards) => cards.length);
    await page.keyboard.press("Space");
    await tabTo(page, "#save-card");
    await page.keyboard.press("Enter");
    await waitForCards(page, seen.cards_while_refused + 1);
    await axe(page, "wallet_one_card");

    // A second card, by pointer; it becomes the default; the first is deleted.
    await page.click("#add-card-button");
    await page.waitForSelector("#card-element input[placeholder=number]");
    await page.waitForFunction(() => !document.getElementById("save-card").disabled);
    await page.fill("input[placeholder=number]", "5555555555554444");
    await page.fill("input[placeholder=exp_month]", "12");
    await page.fill("input[placeholder=exp_year]", "33");
    await page.fill("input[placeholder=cvc]", "123");
    await page.fill("input[placeholder=postal_code]", "75001");
    await page.check("#card-consent");
    await axe(page, "add_card_form");
    await shot(page, "add-card");
    await page.click("#save-card");
    await waitForCards(page, seen.cards_while_refused + 2);
    const card = (last4) => page.locator("#cards .card", { hasText: `ending ${last4}` });
    await card("4444").getByRole("button", { name: /^Make default/ }).click();
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#cards .card")].some((c) => c.textContent.includes("4444") && c.querySelector(".badge.default"))
    );
    await page.waitForLoadState("networkidle");
    // Escape keeps the card; confirming deletes it.
    await card("4242").getByRole("button", { name: /^Delete/ }).click();
    await page.waitForSelector("#confirm-dialog[open]");
    await axe(page, "delete_dialog");
    await shot(page, "delete-card");
    await page.keyboard.press("Escape");
    await page.waitForSelector("#confirm-dialog", { state: "detached" });
    seen.cards_after_escape = (await cardsShown(page)).length;
    await card("4242").getByRole("button", { name: /^Delete/ }).click();
    await page.click("#confirm-dialog button[value=yes]");
    await waitForCards(page, seen.cards_while_refused + 1);
    seen.cards = await cardsShown(page);
    seen.score_with_card = Number(await page.getAttribute("#completion", "value"));

    // The phone, verified from the recommendation.
    await page.click("#verify-phone");
    await page.fill("#phone-number", phoneNumber);
    await page.click("#phone-form button[type=submit]");
    await page.waitForSelector("#phone-code");
    const codes = await (await fetch(`${twilio}/_fake/codes/${encodeURIComponent(phoneNumber)}`)).json();
    await page.fill("#phone-code", codes.codes.at(-1));
    await page.click("#phone-code-form button[type=submit]");
    await page.waitForFunction((before) => Number(document.getElementById("completion").value) > before, seen.score_with_card);
    seen.score_after_phone = Number(await page.getAttribute("#completion", "value"));
    await axe(page, "wallet");
    await shot(page, "wallet-desktop");

    // The same page on a phone.
    await page.setViewportSize({ width: 375, height: 812 });
    await page.reload();
    await page.waitForSelector("#cards");
    seen.mobile_overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await axe(page, "wallet_mobile");
    await shot(page, "wallet-mobile");
    await page.click("#add-card-button");
    await page.waitForSelector("#card-element input[placeholder=number]");
    seen.mobile_overflow_adding = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.click("#cancel-card");

    // "Complete authentication", where the 3-D Secure email links.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${base}/bookings/${bookingId}/authenticate`);
    await page.waitForSelector("#complete-authentication");
    seen.route_shown = await page.textContent("#booking-route");
    await axe(page, "authenticate");
    await shot(page, "authenticate");
    await page.click("#complete-authentication");
    // Stripe.js's own 3-D Secure step (localstripe's): its button has focus.
    await page.waitForSelector("text=Do you want to confirm or cancel?");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#final-state", { timeout: 30000 });
    seen.final_state = await page.textContent("#final-state");
    await axe(page, "authenticated");
    await shot(page, "authenticated");
    seen.script_ran = await page.evaluate(() => window.__xss === true);

    // Back to the wallet: the 3-D Secure card is no longer to be charged while away.
    await page.click("#back-to-wallet");
    await page.waitForSelector("#cards");
    await card("3184").getByRole("button", { name: /^Stop automatic charges/ }).click();
    await page.waitForFunction(() =>
      [...document.querySelectorAll("#cards .card")].some((c) =>
        c.textContent.includes("3184") && c.textContent.includes("Not used for automatic bookings")
      )
    );
    seen.withdrawn = true;
  } finally {
    await browser.close();
  }
}

main()
  .then(() => console.log(JSON.stringify(seen)))
  .catch((error) => {
    console.log(JSON.stringify({ ...seen, failed: String(error.stack ?? error) }));
    process.exit(1);
  });
