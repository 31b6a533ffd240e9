// The profile's completion score as a progress bar, and each recommendation
// as something to do; the phone is verified here, in place.

import { announce, h, replace } from "./dom.ts";
import { actionKey, failure, type Functions } from "./functions.ts";

const PHONE_FIELDS = new Set(["phone_number", "phone_verified"]);

export async function profileSection(functions: Functions, refresh: () => Promise<void>): Promise<Node[]> {
  const { data: profile } = await functions.showProfile();
  const score = profile.completeness_score;
  let phoneOffered = false;
  const todo = profile.recommendations.map((text, i) => {
    const field = profile.missing_fields[i] ?? "";
    const offerPhone = PHONE_FIELDS.has(field) && !phoneOffered;
    phoneOffered ||= offerPhone;
    return h("li", {}, text, offerPhone && " ", offerPhone && phoneButton(functions, refresh));
  });
  const nodes: (Node | null)[] = [
    profile.first_name ? h("p", { id: "greeting" }, "Hello, ", profile.first_name) : null,
    h("p", { class: "score", id: "completion-label" }, `Your profile is ${score}% complete`),
    h("progress", { id: "completion", max: 100, value: score, "aria-labelledby": "completion-label" }, `${score}%`),
    todo.length > 0 ? h("h3", {}, "To finish your profile") : h("p", { class: "success" }, "Nothing left to add."),
    todo.length > 0 ? h("ul", { id: "recommendations" }, ...todo) : null,
  ];
  return nodes.filter((node): node is Node => node !== null);
}

function phoneButton(functions: Functions, refresh: () => Promise<void>): HTMLElement {
  const slot = h("div", {});
  const button = h("button", {
    type: "button",
    id: "verify-phone",
    class: "secondary",
    onclick: () => replace(slot, phoneForm(functions, refresh)),
  }, "Verify your phone");
  replace(slot, button);
  return slot;
}

function phoneForm(functions: Functions, refresh: () => Promise<void>): HTMLElement {
  const error = h("p", { class: "error", role: "alert" });
  const number = h("input", {
    id: "phone-number",
    type: "tel",
    autocomplete: "tel",
    required: true,
    "aria-describedby": "phone-number-hint",
  });
  const form = h(
    "form",
    {
      id: "phone-form",
      "aria-label": "Verify your phone",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          const { data } = await functions.startPhoneVerification(number.value.trim(), actionKey());
          if (data.status === "approved") {
            announce("Your phone is verified");
            await refresh();
            return;
          }
          replace(form, codeForm(functions, refresh, data.phone_number));
        } catch (e) {
          error.textContent = failure(e);
        }
      },
    },
    h("div", { class: "field" },
      h("label", { for: "phone-number" }, "Mobile number"),
      h("p", { id: "phone-number-hint", class: "card-meta" }, "International format, for example +33612345678"),
      number),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Send me a code")),
  );
  queueMicrotask(() => number.focus());
  return form;
}

function codeForm(functions: Functions, refresh: () => Promise<void>, phoneNumber: string): HTMLElement {
  const error = h("p", { class: "error", role: "alert" });
  const code = h("input", {
    id: "phone-code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    required: true,
  });
  const form = h(
    "form",
    {
      id: "phone-code-form",
      "aria-label": "Enter the code",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          await functions.checkPhoneCode(code.value.trim(), actionKey());
          announce("Your phone is verified");
          await refresh();
        } catch (e) {
          error.textContent = failure(e);
        }
      },
    },
    h("div", { class: "field" }, h("label", { for: "phone-code" }, `The code we sent to ${phoneNumber}`), code),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Verify")),
  );
  queueMicrotask(() => code.focus());
  return form;
}
