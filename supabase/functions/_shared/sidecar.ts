// The one client every Parker Wallet Edge Function uses to reach the sidecar:
// over its Unix socket (self-hosted Supabase, the socket volume shared), with
// the caller's own headers passed on, and the sidecar's problem+json refusals
// turned into one typed error carrying the stable `code`.

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
  constructor(readonly status: number, readonly problem: Problem) {
    super(`${problem.code}: ${problem.detail ?? problem.title}`);
    this.name = "SidecarError";
  }

  get code(): string {
    return this.problem.code;
  }
}

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

export class Sidecar {
  readonly #client: Deno.HttpClient;

  constructor(socketPath: string) {
    this.#client = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });
  }

  /** The socket named by PW_SIDECAR_SOCKET, or the default path. */
  static fromEnv(): Sidecar {
    return new Sidecar(Deno.env.get("PW_SIDECAR_SOCKET") ?? "/run/parker-wallet/sidecar.sock");
  }

  /** The sidecar's answer as it is (status, headers, body), for a function
   * that passes it on unchanged. */
  fetch(method: string, path: string, headers: Headers, body?: BodyInit | null): Promise<Response> {
    return fetch(`http://sidecar${path}`, { method, client: this.#client, headers, body: body ?? undefined });
  }

  /** The sidecar's JSON answer, or a [`SidecarError`] for a refusal. */
  async json<T>(method: string, path: string, headers: Headers, body?: unknown): Promise<T> {
    const sent = new Headers(headers);
    if (body !== undefined) sent.set("content-type", "application/json");
    const response = await this.fetch(method, path, sent, body === undefined ? null : JSON.stringify(body));
    const answer = await response.json();
    if (!response.ok) throw new SidecarError(response.status, answer as Problem);
    return answer as T;
  }
}

/** Passes the sidecar's answer on as it is: its errors are already problem+json. */
export function relay(upstream: Response): Response {
  const headers = new Headers({ "content-type": upstream.headers.get("content-type") ?? "application/json" });
  const retryAfter = upstream.headers.get("retry-after");
  if (retryAfter) headers.set("retry-after", retryAfter);
  return new Response(upstream.body, { status: upstream.status, headers });
}
