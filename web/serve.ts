// The local stand-in for a Supabase project's front door, for the demo and
// the tests: `/functions/v1/<name>/...` runs that Edge Function's handler (as
// `supabase functions serve` does), and everything else serves the reference
// wallet page, with a Content-Security-Policy that allows no inline script or
// style. Listens on loopback only.
//
//   deno run --config=supabase/functions/deno.json ... web/serve.ts --port N --bundle app.js
//
// Environment: PW_SIDECAR_SOCKET (or PW_SIDECAR_URL + PW_SIDECAR_SERVICE_TOKEN)
// for the functions; PW_STRIPE_JS_URL and PW_STRIPE_PUBLISHABLE_KEY for the
// page; PW_DEMO_TRAVELER_TOKEN, on the local stack only, for "Sign in as the
// demo traveler".

import { handler as bookCampaign } from "../supabase/functions/book-campaign/index.ts";
import { handler as bookings } from "../supabase/functions/bookings/index.ts";
import { handler as managePaymentMethods } from "../supabase/functions/manage-payment-methods/index.ts";
import { handler as privacy } from "../supabase/functions/privacy/index.ts";
import { handler as profile } from "../supabase/functions/profile/index.ts";
import { handler as stripeWebhooks } from "../supabase/functions/stripe-webhooks/index.ts";
import { handler as verifyPhone } from "../supabase/functions/verify-phone/index.ts";

type Handler = (req: Request) => Response | Promise<Response>;

/** Every function, by the name it is deployed under (supabase/config.toml). */
export const FUNCTIONS: Record<string, Handler> = {
  "book-campaign": bookCampaign,
  "bookings": bookings,
  "manage-payment-methods": managePaymentMethods,
  "privacy": privacy,
  "profile": profile,
  "stripe-webhooks": stripeWebhooks,
  "verify-phone": verifyPhone,
};

const PAGE = new URL("./wallet/", import.meta.url);

export interface PageSettings {
  bundle: string;
  stripeJsUrl: string;
  stripePublishableKey: string;
  demoToken: string | null;
}

/** The page's CSP: scripts from this origin and Stripe's only, no inline
 * script or style, nothing framed, no plugins. */
export function contentSecurityPolicy(stripeJsUrl: string): string {
  const stripe = new URL(stripeJsUrl).origin;
  // Stripe.js calls Stripe's API and frames its own pages (Elements, 3-D
  // Secure) on origins of its own, as Stripe's CSP guide lists them; the
  // emulator serves all of it from the script's origin.
  const real = stripe === "https://js.stripe.com";
  const connect = real ? [stripe, "https://api.stripe.com"] : [stripe];
  const frames = real ? [stripe, "https://hooks.stripe.com"] : [stripe];
  return [
    "default-src 'none'",
    `script-src 'self' ${stripe}`,
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src 'self' ${connect.join(" ")}`,
    `frame-src ${frames.join(" ")}`,
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ].join("; ");
}

const LOOPBACK_NAMES = new Set(["127.0.0.1", "localhost", "[::1]"]);

export function gateway(
  settings: PageSettings,
): (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => Promise<Response> {
  const security = {
    "content-security-policy": contentSecurityPolicy(settings.stripeJsUrl),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
  };
  const file = async (path: string | URL, type: string) =>
    new Response(await Deno.readFile(path), { headers: { ...security, "content-type": type, "cache-control": "no-cache" } });

  return async (incoming: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Promise<Response> => {
    const url = new URL(incoming.url);
    // Loopback names only: a page elsewhere that rebinds its own name to this
    // address (DNS rebinding) is not served, so it cannot take the demo token.
    if (!LOOPBACK_NAMES.has(url.hostname)) return new Response("Unknown host", { status: 421, headers: security });
    // The audit trail's address is the peer's, as a gateway sets it, never the caller's claim.
    const headers = new Headers(incoming.headers);
    headers.set("x-forwarded-for", info.remoteAddr.hostname);
    // A new request, not a copy of the incoming one: a copy would take its abort signal too.
    const req = new Request(incoming.url, { method: incoming.method, headers, body: incoming.body });
    const [first, second, name] = url.pathname.split("/").filter(Boolean);
    if (first === "functions" && second === "v1") {
      const handler = name !== undefined && Object.hasOwn(FUNCTIONS, name) ? FUNCTIONS[name] : undefined;
      if (!handler) return Response.json({ code: "not_found", title: "No such function" }, { status: 404 });
      return await handler(req);
    }
    if (req.method === "POST" && url.pathname === "/demo/session" && settings.demoToken) {
      // Same-origin only: another site's page cannot ask for the token.
      const origin = req.headers.get("origin");
      if (origin !== null && origin !== url.origin) return new Response("Forbidden", { status: 403, headers: security });
      return Response.json({ access_token: settings.demoToken }, { headers: { "cache-control": "no-store" } });
    }
    if (req.method !== "GET") return new Response("Not found", { status: 404, headers: security });
    switch (url.pathname) {
      case "/app.js":
        return await file(settings.bundle, "text/javascript; charset=utf-8");
      case "/style.css":
        return await file(new URL("style.css", PAGE), "text/css; charset=utf-8");
      case "/config.json":
        return Response.json({
          stripe_js_url: settings.stripeJsUrl,
          stripe_publishable_key: settings.stripePublishableKey,
          demo_sign_in: settings.demoToken !== null,
        }, { headers: security });
      case "/favicon.ico":
        return new Response(null, { status: 204, headers: security });
      default:
        // Every other path is one of the page's own (/, /bookings/{id}/authenticate).
        return await file(new URL("index.html", PAGE), "text/html; charset=utf-8");
    }
  };
}

function argument(name: string): string | undefined {
  const at = Deno.args.indexOf(name);
  return at < 0 ? undefined : Deno.args[at + 1];
}

if (import.meta.main) {
  const bundle = argument("--bundle");
  const port = Number(argument("--port") ?? "0");
  if (!bundle) throw new Error("usage: serve.ts --port N --bundle app.js");
  const settings: PageSettings = {
    bundle,
    stripeJsUrl: Deno.env.get("PW_STRIPE_JS_URL") ?? "https://js.stripe.com/v3/",
    stripePublishableKey: Deno.env.get("PW_STRIPE_PUBLISHABLE_KEY") ?? "",
    demoToken: Deno.env.get("PW_DEMO_TRAVELER_TOKEN") ?? null,
  };
  Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: ({ port }) => console.log(JSON.stringify({ listening: `http://127.0.0.1:${port}` })),
  }, gateway(settings));
}
