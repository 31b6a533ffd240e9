// A Supabase Edge Function: the traveler's saved cards, from the Parker Wallet
// sidecar over its Unix socket. The traveler's JWT is forwarded untouched: the
// sidecar verifies it and acts for that traveler only (and RLS holds it to that).
//
// Deploy next to the sidecar's socket; set PW_SIDECAR_SOCKET if it is not the
// default path. Nothing secret lives here: the Stripe and KMS keys stay in the
// sidecar.

const socketPath = Deno.env.get("PW_SIDECAR_SOCKET") ?? "/run/parker-wallet/sidecar.sock";
const sidecar = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });

/** Headers worth passing on: who asks (JWT) and from where (for the audit trail). */
function forwarded(req: Request): Headers {
  const headers = new Headers();
  for (const name of ["authorization", "x-forwarded-for", "user-agent", "idempotency-key"]) {
    const value = req.headers.get(name);
    if (value) headers.set(name, value);
  }
  return headers;
}

export async function handler(req: Request): Promise<Response> {
  if (!req.headers.get("authorization")) {
    return Response.json(
      { type: "about:blank", title: "Invalid or missing traveler token", status: 401, code: "invalid_token" },
      { status: 401, headers: { "content-type": "application/problem+json" } },
    );
  }
  const upstream = await fetch("http://sidecar/v1/wallet/payment-methods", {
    client: sidecar,
    headers: forwarded(req),
  });
  // Pass the sidecar's answer on as it is: its errors are already problem+json.
  return new Response(upstream.body, {
    status: upstream.status,
    headers: { "content-type": upstream.headers.get("content-type") ?? "application/json" },
  });
}

if (import.meta.main) {
  Deno.serve(handler);
}
