// What the server tells the page (GET /config.json): where Stripe.js comes from.

export interface PageConfig {
  stripe_js_url: string;
  stripe_publishable_key: string;
  demo_sign_in: boolean;
}

export async function loadConfig(): Promise<PageConfig> {
  const response = await fetch("/config.json");
  if (!response.ok) throw new Error("The page's settings could not be loaded");
  return (await response.json()) as PageConfig;
}
