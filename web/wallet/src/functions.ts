// The page's client for Parker Wallet's Edge Functions, typed with the types
// generated from the sidecar's own (the functions pass its answers on as they
// are). Every write carries an Idempotency-Key: one per traveler action,
// which the caller passes again when it retries that action, so a retry after
// a lost answer replays it instead of acting twice.

import type {
  AddPaymentMethodRequest,
  BookingView,
  CardConsentView,
  CardView,
  ConsentView,
  Data,
  DeletedView,
  PhoneVerificationView,
  PhoneVerifiedView,
  ProfileView,
  SetupIntentView,
} from "../../../supabase/functions/_shared/api.ts";

export type { BookingView, CardConsentView, CardView, ProfileView };

/** A refusal, as problem+json: `code` is stable, `message` is for people. */
export class FunctionError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
    this.name = "FunctionError";
  }
}

/** A failure in words for the traveler. */
export function failure(error: unknown): string {
  if (error instanceof FunctionError && error.status === 401) return "Your session has ended: sign in again.";
  return error instanceof Error ? error.message : "Something went wrong.";
}

/** A new action's Idempotency-Key. */
export function actionKey(): string {
  return crypto.randomUUID();
}

export class Functions {
  constructor(private readonly token: string, private readonly base = "/functions/v1") {}

  listPaymentMethods(): Promise<Data<CardView[]>> {
    return this.#call("GET", "manage-payment-methods");
  }

  createSetupIntent(key: string): Promise<SetupIntentView> {
    return this.#call("POST", "manage-payment-methods/setup-intents", undefined, key);
  }

  addPaymentMethod(body: AddPaymentMethodRequest, key: string): Promise<Data<CardView>> {
    return this.#call("POST", "manage-payment-methods", body, key);
  }

  makeDefault(cardId: string, key: string): Promise<Data<CardView>> {
    return this.#call("POST", `manage-payment-methods/${encodeURIComponent(cardId)}/default`, undefined, key);
  }

  deletePaymentMethod(cardId: string, key: string): Promise<DeletedView> {
    return this.#call("DELETE", `manage-payment-methods/${encodeURIComponent(cardId)}`, undefined, key);
  }

  withdrawConsent(cardId: string, key: string): Promise<Data<ConsentView>> {
    return this.#call("DELETE", `manage-payment-methods/${encodeURIComponent(cardId)}/consent`, undefined, key);
  }

  showProfile(): Promise<Data<ProfileView>> {
    return this.#call("GET", "profile");
  }

  startPhoneVerification(phoneNumber: string, key: string): Promise<Data<PhoneVerificationView>> {
    return this.#call("POST", "verify-phone", { phone_number: phoneNumber }, key);
  }

  checkPhoneCode(code: string, key: string): Promise<Data<PhoneVerifiedView>> {
    return this.#call("POST", "verify-phone/check", { code }, key);
  }

  showBooking(bookingId: string): Promise<Data<BookingView>> {
    return this.#call("GET", `bookings/${encodeURIComponent(bookingId)}`);
  }

  /** Safe to repeat: the booking itself is the record of where it stands. */
  resumeBooking(bookingId: string): Promise<Data<BookingView>> {
    return this.#call("POST", `bookings/${encodeURIComponent(bookingId)}/resume`);
  }

  async #call<T>(method: string, path: string, body?: unknown, key?: string): Promise<T> {
    const headers = new Headers({ authorization: `Bearer ${this.token}` });
    if (key) headers.set("idempotency-key", key);
    if (body !== undefined) headers.set("content-type", "application/json");
    const response = await fetch(`${this.base}/${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const problem = answer as { code?: string; detail?: string; title?: string };
      throw new FunctionError(
        response.status,
        problem.code ?? "unknown",
        problem.detail ?? problem.title ?? `The request failed (${response.status})`,
      );
    }
    return answer as T;
  }
}
