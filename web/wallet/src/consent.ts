// The wording the traveler agrees to before a card may be charged while they
// are away (a merchant-initiated transaction under PSD2), and its version:
// the version is what the wallet records beside the card. Change the words,
// change the version.

export const CARD_CONSENT_VERSION = "card-mit-2026-12";

export const CARD_CONSENT_TEXT =
  "I authorise Parker Flight to charge this card, without asking me each time, " +
  "for flights booked for me by the booking campaigns I have set up and consented to. " +
  "I can withdraw this at any time from my wallet.";
