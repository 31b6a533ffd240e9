// The profile and wallet page: the completion score and what to do next,
// the phone check, and the cards.

import type { PageConfig } from "./config.ts";
import { h, page, replace } from "./dom.ts";
import { failure, type Functions } from "./functions.ts";
import { profileSection } from "./profile.ts";
import { walletSection } from "./wallet.ts";

export async function homePage(functions: Functions, config: PageConfig): Promise<void> {
  const profile = h("section", { class: "panel", "aria-labelledby": "profile-heading" });
  const wallet = h("section", { class: "panel", "aria-labelledby": "wallet-heading" });
  page("Your profile and wallet", profile, wallet);
  const refreshProfile = () => loading(profile, "profile-heading", "Your profile", profileSection(functions, refreshProfile));
  const loadWallet = () => loading(wallet, "wallet-heading", "Your cards", walletSection(functions, config, refreshWallet));
  // A card added or removed moves the profile's score too.
  const refreshWallet = (): Promise<void> => loadWallet().then(refreshProfile);
  await Promise.all([refreshProfile(), loadWallet()]);
}

/** Fills a section once its content has loaded; a failure is said in place. */
export async function loading(
  section: HTMLElement,
  headingId: string,
  heading: string,
  content: Promise<Node[]>,
): Promise<void> {
  const title = h("h2", { id: headingId }, heading);
  if (!section.hasChildNodes()) replace(section, title, h("p", {}, "Loading…"));
  try {
    replace(section, title, ...(await content));
  } catch (error) {
    replace(section, title, h("p", { class: "error", role: "alert" }, failure(error)));
  }
}
