// The traveler's access token for this tab. Supabase Auth issues it in the
// app; the local stack's server hands out a demo traveler's instead.

const KEY = "parker-wallet.access-token";

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}

export async function signInAsDemoTraveler(): Promise<void> {
  const response = await fetch("/demo/session", { method: "POST" });
  if (!response.ok) throw new Error("The demo sign-in is not available here");
  const { access_token } = (await response.json()) as { access_token: string };
  sessionStorage.setItem(KEY, access_token);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}
