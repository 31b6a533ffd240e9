// Stripe.js, loaded from the origin the server names (js.stripe.com in
// production; the Stripe emulator locally). Only what the page uses is typed.

export interface CardElement {
  mount(target: string | Element): void;
  destroy(): void;
}

export interface StripeError {
  message?: string;
  code?: string;
}

export interface StripeJs {
  elements(): { create(type: "card"): CardElement };
  confirmCardSetup(
    clientSecret: string,
    data: { payment_method: { card: CardElement } },
  ): Promise<{ setupIntent?: { id: string; status: string }; error?: StripeError | null }>;
  confirmCardPayment(
    clientSecret: string,
    data?: { payment_method?: string },
  ): Promise<{ paymentIntent?: { id: string; status: string }; error?: StripeError | null }>;
}

/** What Stripe.js puts on the page's global object. */
type StripeGlobal = { Stripe?: (publishableKey: string) => StripeJs };

let loading: Promise<StripeJs> | null = null;

/** Stripe.js, loaded once. */
export function loadStripe(scriptUrl: string, publishableKey: string): Promise<StripeJs> {
  loading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = scriptUrl;
    script.addEventListener("load", () => {
      const { Stripe } = globalThis as StripeGlobal;
      if (Stripe) resolve(Stripe(publishableKey));
      else reject(new Error("Stripe.js did not load"));
    });
    script.addEventListener("error", () => reject(new Error("Stripe.js could not be loaded")));
    document.head.appendChild(script);
  });
  return loading;
}
