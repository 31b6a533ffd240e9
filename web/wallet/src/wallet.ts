// The wallet: the saved cards (expired ones flagged), the default switch,
// delete with confirmation, and adding a card with Stripe Elements behind
// the PSD2 consent to off-session charges.

import type { PageConfig } from "./config.ts";
import { CARD_CONSENT_TEXT, CARD_CONSENT_VERSION } from "./consent.ts";
import { announce, h, replace } from "./dom.ts";
import { cardName, expiry } from "./format.ts";
import { actionKey, type CardView, failure, type Functions } from "./functions.ts";
import { loadStripe } from "./stripe.ts";

export async function walletSection(
  functions: Functions,
  config: PageConfig,
  refresh: () => Promise<void>,
): Promise<Node[]> {
  const { data: cards } = await functions.listPaymentMethods();
  const error = h("p", { class: "error", role: "alert", id: "wallet-error" });
  const adding = h("div", { id: "add-card" });
  const addButton = h("button", {
    type: "button",
    id: "add-card-button",
    onclick: () => void openAddCard(adding, functions, config, refresh, () => replace(adding, addButton)),
  }, "Add a card");
  replace(adding, addButton);
  const list = cards.length === 0
    ? h("p", { id: "no-cards" }, "No cards yet.")
    : h("ul", { class: "cards", id: "cards" }, ...cards.map((card) => cardItem(card, functions, refresh, error)));
  return [list, error, adding];
}

function cardItem(card: CardView, functions: Functions, refresh: () => Promise<void>, error: HTMLElement): HTMLElement {
  const name = cardName(card);
  // One key per click: a retry of the same click is a new click here, and
  // these actions are no-ops the second time.
  const act = (work: (key: string) => Promise<unknown>, done: string) => async () => {
    error.textContent = "";
    try {
      await work(actionKey());
      announce(done);
      await refresh();
    } catch (e) {
      error.textContent = failure(e);
    }
  };
  return h(
    "li",
    { class: "card", "data-card-id": card.id },
    h("p", { class: "card-title" },
      name,
      card.is_default && h("span", { class: "badge default" }, "Default"),
      card.expired && h("span", { class: "badge expired" }, "Expired")),
    h("p", { class: "card-meta" }, `Expires ${expiry(card)}`),
    h("p", { class: "card-meta" },
      card.off_session_consent
        ? `Can be used for automatic bookings (consent ${card.off_session_consent.text_version})`
        : "Not used for automatic bookings"),
    h("div", { class: "actions" },
      !card.is_default && h("button", {
        type: "button",
        class: "secondary",
        "aria-label": `Make default: ${name}`,
        onclick: act((key) => functions.makeDefault(card.id, key), `${name} is now the default card`),
      }, "Make default"),
      card.off_session_consent && h("button", {
        type: "button",
        class: "secondary",
        "aria-label": `Stop automatic charges: ${name}`,
        onclick: act((key) => functions.withdrawConsent(card.id, key), `${name} will no longer be charged automatically`),
      }, "Stop automatic charges"),
      h("button", {
        type: "button",
        class: "danger",
        "aria-label": `Delete ${name}`,
        onclick: async () => {
          if (await confirmed(`Delete ${name}? It will no longer be used for bookings.`, "Delete card")) {
            await act((key) => functions.deletePaymentMethod(card.id, key), `${name} deleted`)();
          }
        },
      }, "Delete")),
  );
}

/** A modal question; resolves true when the traveler confirms. Escape cancels. */
function confirmed(question: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    const yes = h("button", { type: "submit", value: "yes", class: "danger" }, confirmLabel);
    const no = h("button", { type: "submit", value: "no", class: "secondary" }, "Keep it");
    const dialog = h(
      "dialog",
      { id: "confirm-dialog", "aria-labelledby": "confirm-question" },
      h("form", { method: "dialog" },
        h("p", { id: "confirm-question" }, question),
        h("div", { class: "actions" }, yes, no)),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    no.focus();
  });
}

async function openAddCard(
  container: HTMLElement,
  functions: Functions,
  config: PageConfig,
  refresh: () => Promise<void>,
  close: () => void,
): Promise<void> {
  const error = h("p", { class: "error", role: "alert", id: "add-card-error" });
  const mountPoint = h("div", { id: "card-element", class: "card-element" });
  const consent = h("input", { type: "checkbox", id: "card-consent", "aria-describedby": "card-consent-text" });
  const save = h("button", { type: "submit", id: "save-card", disabled: true }, "Save card");
  const form = h(
    "form",
    { id: "add-card-form", "aria-labelledby": "add-card-heading", novalidate: true },
    h("h3", { id: "add-card-heading" }, "Add a card"),
    h("div", { role: "group", "aria-label": "Card details" }, mountPoint),
    h("p", { id: "card-consent-text", class: "consent-text" }, CARD_CONSENT_TEXT),
    h("div", { class: "checkbox" },
      consent,
      h("label", { for: "card-consent" }, "I agree to automatic charges to this card, as described above")),
    error,
    h("div", { class: "actions" },
      save,
      h("button", { type: "button", class: "secondary", id: "cancel-card", onclick: close }, "Cancel")),
  );
  replace(container, form);
  // Saving this card is one action: a retry after a lost answer replays it.
  const key = actionKey();
  let confirmedAtStripe = false;
  try {
    const stripe = await loadStripe(config.stripe_js_url, config.stripe_publishable_key);
    const intent = await functions.createSetupIntent(`${key}:setup-intent`);
    const card = stripe.elements().create("card");
    card.mount(mountPoint);
    save.disabled = false;
    (mountPoint.querySelector("input") as HTMLElement | null)?.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      if (!consent.checked) {
        consent.setAttribute("aria-invalid", "true");
        error.textContent = "Tick the box to agree to automatic charges: Parker Flight books your flights with this card while you are away.";
        consent.focus();
        return;
      }
      consent.removeAttribute("aria-invalid");
      save.disabled = true;
      try {
        if (!confirmedAtStripe) {
          const confirmed = await stripe.confirmCardSetup(intent.client_secret, { payment_method: { card } });
          if (confirmed.error || !confirmed.setupIntent) {
            error.textContent = confirmed.error?.message ?? "Your card could not be saved.";
            return;
          }
          confirmedAtStripe = true;
        }
        const { data: saved } = await functions.addPaymentMethod({
          setup_intent_id: intent.setup_intent_id,
          off_session_consent: { text_version: CARD_CONSENT_VERSION },
        }, `${key}:save`);
        card.destroy();
        announce(`${saved.brand ?? "Card"} ending ${saved.last4 ?? ""} saved`);
        await refresh();
      } catch (e) {
        error.textContent = failure(e);
      } finally {
        save.disabled = false;
      }
    });
  } catch (e) {
    error.textContent = failure(e);
  }
}
