// The one client every Parker Wallet Edge Function uses to reach the sidecar.
// One function per route (`sidecar.api.*`), typed with the request and
// response types generated from the sidecar's own (./api.ts); a refusal,
// always problem+json, becomes one typed error carrying the stable `code`.
//
// Two transports: the Unix socket (self-hosted Supabase, the socket's volume
// shared with the functions' container), or the loopback TCP port where a
// socket cannot be shared, with the service token in its own header so that
// `Authorization` still carries the traveler's token.

import { type Answer, type JsonBytes, sidecarRoutes, type SidecarRoutes } from "./api.ts";

export type * from "./api.ts";

/** RFC 9457 problem details, as the sidecar answers every refusal. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  [extension: string]: unknown;
}

/** A refusal from the sidecar: `code` is stable (docs/sidecar.md lists them). */
export class SidecarError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem,
    readonly retryAfter: string | null = null,
  ) {
    super(`${problem.code}: ${problem.detail ?? problem.title}`);
    this.name = "SidecarError";
  }

  get code(): string {
    return this.problem.code;
  }
}

/** The header that carries the service token on the TCP port. */
export const SERVICE_TOKEN_HEADER = "x-service-token";

/** The headers worth passing on: who asks (the traveler's JWT), from where
 * (for the audit trail), and the retry key. Nothing else crosses. */
export const FORWARDED_HEADERS = ["authorization", "x-forwarded-for", "user-agent", "idempotency-key"] as const;

export function forwarded(req: Request): Headers {
  const headers = new Headers();
  for (const name of FORWARDED_HEADERS) {
    const value = req.headers.get(name);
    if (value) headers.set(name, value);
  }
  return headers;
}

/** A problem+json answer of the function's own (before the sidecar is asked). */
export function problem(status: number, code: string, title: string): Response {
  return Response.json({ type: "about:blank", title, status, code } satisfies Problem, {
    status,
    headers: { "content-type": "application/problem+json" },
  });
}

/** How requests reach the sidecar. */
export interface Transport {
  fetch(method: string, path: string, headers: Headers, body: BodyInit | null): Promise<Response>;
}

/** The sidecar's Unix socket. */
export function socketTransport(socketPath: string): Transport {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  return {
    fetch: (method, path, headers, body) =>
      fetch(`http://sidecar${path}`, { method, client, headers, body, redirect: "error" }),
  };
}

/** The sidecar's loopback TCP port (`[tcp]` in its settings), with its service token. */
export function tcpTransport(baseUrl: string, serviceToken: string): Transport {
  const base = new URL(baseUrl);
  if (!["127.0.0.1", "[::1]", "localhost"].includes(base.hostname)) {
    throw new Error(`PW_SIDECAR_URL must be a loopback address, not ${base.hostname}`);
  }
  return {
    fetch: (method, path, headers, body) => {
      const sent = new Headers(headers);
      sent.set(SERVICE_TOKEN_HEADER, serviceToken);
      // Never followed: a redirect would carry the service token elsewhere.
      return fetch(new URL(path, base), { method, headers: sent, body, redirect: "error" });
    },
  };
}

export class Sidecar {
  /** One function per sidecar route, typed. */
  readonly api: SidecarRoutes;

  constructor(readonly transport: Transport) {
    this.api = sidecarRoutes(
      (method, path, caller, body) => this.#send(method, path, caller, body),
      (method, path, caller) => this.#stream(method, path, caller),
    );
  }

  /** PW_SIDECAR_URL and PW_SIDECAR_SERVICE_TOKEN (TCP) when set, else the
   * socket named by PW_SIDECAR_SOCKET (or the default path). */
  static fromEnv(): Sidecar {
    const url = Deno.env.get("PW_SIDECAR_URL");
    if (url) {
      const token = Deno.env.get("PW_SIDECAR_SERVICE_TOKEN");
      if (!token) throw new Error("PW_SIDECAR_SERVICE_TOKEN is required with PW_SIDECAR_URL");
      return new Sidecar(tcpTransport(url, token));
    }
    return new Sidecar(socketTransport(Deno.env.get("PW_SIDECAR_SOCKET") ?? "/run/parker-wallet/sidecar.sock"));
  }

  /** A JSON route: its answer, or a [`SidecarError`] for a refusal. Bytes (a
   * request's own JSON, a webhook's body) go as they are, never re-encoded. */
  async #send<T>(method: string, path: string, caller: Headers, body?: unknown): Promise<Answer<T>> {
    const headers = new Headers(caller);
    let sent: BodyInit | null = null;
    if (body instanceof Uint8Array) {
      sent = body as Uint8Array<ArrayBuffer>;
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
    } else if (body !== undefined) {
      headers.set("content-type", "application/json");
      sent = JSON.stringify(body);
    }
    const response = await this.transport.fetch(method, path, headers, sent);
    if (!response.ok) throw await refusal(response);
    return {
      status: response.status,
      body: (await response.json()) as T,
      replayed: response.headers.get("idempotent-replayed") === "true",
    };
  }

  /** A streamed route (the export): the response, its body unread. */
  async #stream(method: string, path: string, caller: Headers): Promise<Response> {
    const response = await this.transport.fetch(method, path, caller, null);
    if (!response.ok) throw await refusal(response);
    return response;
  }
}

async function refusal(response: Response): Promise<SidecarError> {
  const text = await response.text();
  let body: Problem;
  try {
    body = JSON.parse(text) as Problem;
  } catch {
    body = { type: "about:blank", title: "The sidecar answered without a problem body", status: response.status, code: "internal" };
  }
  return new SidecarError(response.status, body, response.headers.get("retry-after"));
}

/** A function's answer from the sidecar's: the same status, body and replay
 * flag; a refusal as the same problem+json (with its Retry-After). */
export async function respond<T>(call: Promise<Answer<T>>): Promise<Response> {
  try {
    const answer = await call;
    const headers = new Headers({ "cache-control": "no-store" });
    if (answer.replayed) headers.set("idempotent-replayed", "true");
    return Response.json(answer.body, { status: answer.status, headers });
  } catch (error) {
    if (error instanceof SidecarError) return refused(error);
    throw error;
  }
}

/** Refusals of the function itself, not of the traveler: a wrong service
 * token or an unmapped uid is the deployment's fault, and says nothing to the
 * app but that the wallet is unavailable. */
const DEPLOYMENT_REFUSALS = new Set(["invalid_service_token", "caller_not_allowed"]);

/** A sidecar refusal passed on: the same problem+json, with its Retry-After. */
export function refused(error: SidecarError): Response {
  const headers = new Headers({ "content-type": "application/problem+json", "cache-control": "no-store" });
  if (DEPLOYMENT_REFUSALS.has(error.code)) {
    console.error(`the sidecar refused this function: ${error.code} (check PW_SIDECAR_SERVICE_TOKEN or [callers])`);
    const body: Problem = { type: "about:blank", title: "The wallet is unavailable", status: 502, code: "sidecar_unavailable" };
    return new Response(JSON.stringify(body), { status: 502, headers });
  }
  if (error.retryAfter) headers.set("retry-after", error.retryAfter);
  return new Response(JSON.stringify(error.problem), { status: error.status, headers });
}

/** The path segments after the function's own name (`/functions/v1/<name>/a/b` → `["a", "b"]`). */
export function segmentsAfter(name: string, url: string): string[] {
  const segments = new URL(url).pathname.split("/").filter(Boolean);
  const at = segments.indexOf(name);
  return at < 0 ? segments : segments.slice(at + 1);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `text` is a row id (checked here, so nothing else reaches the sidecar's path). */
export function isUuid(text: string | undefined): text is string {
  return text !== undefined && UUID.test(text);
}

/** Calls the sidecar with the request's JSON body, passed on byte for byte (no
 * re-encoding: the sidecar's own parser decides, as it would for a direct
 * call); `parsed` is there for a function that needs a field. A body that is
 * not JSON is refused here (400 `invalid_request`). */
export async function withJsonBody<T>(
  req: Request,
  call: (body: JsonBytes<T>, parsed: T) => Promise<Answer<unknown>>,
): Promise<Response> {
  const bytes = new Uint8Array(await req.arrayBuffer());
  let parsed: T;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as T;
  } catch {
    return problem(400, "invalid_request", "The body is not JSON");
  }
  return await respond(call(bytes as JsonBytes<T>, parsed));
}

/** 401 unless the request carries a bearer token (the sidecar verifies it). */
export function requireToken(req: Request): Response | null {
  return req.headers.get("authorization")?.startsWith("Bearer ")
    ? null
    : problem(401, "invalid_token", "Invalid or missing traveler token");
}
