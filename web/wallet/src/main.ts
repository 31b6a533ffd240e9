// Parker Wallet's reference page: what Parker Flight's app shows a traveler,
// built on the Edge Functions only. Two pages: the profile and wallet (/),
// and "Complete authentication" (/bookings/{id}/authenticate), where the
// 3-D Secure email links.

import { authenticationPage } from "./authenticate.ts";
import { loadConfig, type PageConfig } from "./config.ts";
import { h, page, replace } from "./dom.ts";
import { Functions } from "./functions.ts";
import { homePage } from "./home.ts";
import * as session from "./session.ts";

const AUTHENTICATE = /^\/bookings\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/authenticate$/i;

async function render(): Promise<void> {
  const config = await loadConfig();
  const token = session.token();
  renderAccount(token !== null);
  if (token === null) return signInPage(config);
  const functions = new Functions(token);
  const booking = AUTHENTICATE.exec(location.pathname);
  if (booking) return await authenticationPage(functions, config, booking[1]);
  return await homePage(functions, config);
}

function renderAccount(signedIn: boolean): void {
  const nav = document.getElementById("account") as HTMLElement;
  replace(
    nav,
    signedIn &&
      h("button", {
        type: "button",
        class: "secondary",
        onclick: () => {
          session.signOut();
          void render();
        },
      }, "Sign out"),
  );
}

function signInPage(config: PageConfig): void {
  const failure = h("p", { class: "error", role: "alert" });
  page(
    "Sign in",
    h("p", {}, "Sign in to see your profile and your cards."),
    config.demo_sign_in
      ? h("button", {
        type: "button",
        id: "sign-in",
        onclick: async () => {
          try {
            await session.signInAsDemoTraveler();
            await render();
          } catch (error) {
            failure.textContent = (error as Error).message;
          }
        },
      }, "Sign in as the demo traveler")
      : h("p", {}, "Sign in with the Parker Flight app."),
    failure,
  );
}

render().catch((error) => {
  page("Something went wrong", h("p", { class: "error", role: "alert" }, (error as Error).message));
});
