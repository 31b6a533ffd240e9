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
  const number = h("input", {
    id: "phone-number",
    type: "tel",
    autocomplete: "tel",
    required: true,
    "aria-describedby": "phone-number-hint",
  });
  const form: HTMLElement = oneFieldForm({
    id: "phone-form",
    name: "Verify your phone",
    label: h("label", { for: "phone-number" }, "Mobile number"),
    hint: h("p", { id: "phone-number-hint", class: "card-meta" }, "International format, for example +33612345678"),
    input: number,
    submit: "Send me a code",
    onSubmit: async () => {
      const { data } = await functions.startPhoneVerification(number.value.trim(), actionKey());
      if (data.status === "approved") {
        announce("Your phone is verified");
        await refresh();
        return;
      }
      replace(form, codeForm(functions, refresh, data.phone_number));
    },
  });
  return form;
}

function codeForm(functions: Functions, refresh: () => Promise<void>, phoneNumber: string): HTMLElement {
  const code = h("input", { id: "phone-code", inputmode: "numeric", autocomplete: "one-time-code", required: true });
  return oneFieldForm({
    id: "phone-code-form",
    name: "Enter the code",
    label: h("label", { for: "phone-code" }, `The code we sent to ${phoneNumber}`),
    input: code,
    submit: "Verify",
    onSubmit: async () => {
      await functions.checkPhoneCode(code.value.trim(), actionKey());
      announce("Your phone is verified");
      await refresh();
    },
  });
}

/** A form of one field and a submit button, focused when shown; a failure of
 * `onSubmit` is said under the field. */
function oneFieldForm(form: {
  id: string;
  name: string;
  label: HTMLElement;
  hint?: HTMLElement;
  input: HTMLInputElement;
  submit: string;
  onSubmit: () => Promise<void>;
}): HTMLElement {
  const error = h("p", { class: "error", role: "alert" });
  queueMicrotask(() => form.input.focus());
  return h(
    "form",
    {
      id: form.id,
      "aria-label": form.name,
      onsubmit: async (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          await form.onSubmit();
        } catch (e) {
          error.textContent = failure(e);
        }
      },
    },
    h("div", { class: "field" }, form.label, form.hint, form.input),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit" }, form.submit)),
  );
}
