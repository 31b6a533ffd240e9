// A traveler saving a card in a real (headless) Chromium: a page using Stripe.js
// (localstripe's) mounts the card Element, the "traveler" types a test card, and
// confirmCardSetup runs with the client secret the sidecar handed out.
//
//   node confirm_card_setup.cjs <localstripe base URL> <client secret> <card number>
// prints {"ok": true, "status": "..."} or {"ok": false, "error": ...}.
// CommonJS, so that NODE_PATH finds playwright-core where the project installs it.
const http = require("node:http");
const { chromium } = require("playwright-core");

async function main() {
const [stripeBase, clientSecret, cardNumber] = process.argv.slice(2);

const page = `<!doctype html>
<html><head><meta charset="utf-8"><title>Save a card</title>
<script src="${stripeBase}/js.stripe.com/v3/"></script></head>
<body>
  <form id="save-card"><div id="card"></div><button id="save" type="submit">Save card</button></form>
  <p id="result"></p>
  <script>
    const stripe = Stripe("pk_test_parker_wallet");
    const card = stripe.elements().create("card");
    card.mount("#card");
    document.getElementById("save-card").addEventListener("submit", async (event) => {
      event.preventDefault();
      const { setupIntent, error } = await stripe.confirmCardSetup(${JSON.stringify(clientSecret)}, {
        payment_method: { card },
      });
      document.getElementById("result").textContent =
        JSON.stringify(error ? { ok: false, error } : { ok: true, status: setupIntent.status });
    });
  </script>
</body></html>`;

const server = http.createServer((_, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end(page);
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const { port } = server.address();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${port}/`);
  await tab.fill("input[placeholder=number]", cardNumber);
  await tab.fill("input[placeholder=exp_month]", "12");
  await tab.fill("input[placeholder=exp_year]", "33");
  await tab.fill("input[placeholder=cvc]", "123");
  await tab.fill("input[placeholder=postal_code]", "75001");
  await tab.click("#save");
  await tab.waitForFunction(() => document.getElementById("result").textContent !== "", null, { timeout: 20000 });
  console.log(await tab.textContent("#result"));
} finally {
  await browser.close();
  server.close();
}
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
