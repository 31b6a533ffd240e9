// Building the page: every string becomes a text node, never markup. There is
// no innerHTML anywhere in the page, so a traveler's name, a card's brand or a
// bank's message cannot become script, whatever it holds.

type Child = Node | string | number | null | undefined | false;

interface Props {
  /** Attributes; `on*` and URL-valued attributes are refused (see `setAttribute`). */
  [attribute: string]: string | number | boolean | undefined | ((event: Event) => void);
}

const URL_ATTRIBUTES = new Set(["href", "src", "action", "formaction", "xlink:href"]);

/** An element with attributes, event listeners (`onclick: fn`) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (typeof value === "function") {
      if (!name.startsWith("on")) throw new Error(`${name}: only event listeners may be functions`);
      element.addEventListener(name.slice(2), value);
    } else if (value !== undefined && value !== false) {
      setAttribute(element, name, value === true ? "" : String(value));
    }
  }
  append(element, ...children);
  return element;
}

function setAttribute(element: Element, name: string, value: string): void {
  const lower = name.toLowerCase();
  if (lower.startsWith("on")) throw new Error(`${name}: event handlers are set as listeners, not attributes`);
  if (URL_ATTRIBUTES.has(lower) && !isSafeUrl(value)) throw new Error(`${name}: only same-origin or https URLs`);
  element.setAttribute(name, value);
}

function isSafeUrl(value: string): boolean {
  const url = new URL(value, location.href);
  return url.origin === location.origin || url.protocol === "https:";
}

/** Appends children, strings as text. */
export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** Says `message` to screen readers (the polite live region). */
export function announce(message: string): void {
  const announcer = document.getElementById("announcer");
  if (announcer) announcer.textContent = message;
}

/** The page's main region, focused, with `heading` as the document's title. */
export function page(heading: string, ...children: Child[]): HTMLElement {
  const main = document.getElementById("main") as HTMLElement;
  document.title = `${heading} · Parker Wallet`;
  replace(main, h("h1", {}, heading), ...children);
  return main;
}
