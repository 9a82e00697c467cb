// Pullback UI: building elements, calling the API, and formatting values.
//
// Data is only ever put into the page as text (textContent, attribute values), never parsed
// as HTML, so whatever an alert carries stays inert.

/** The signed-in session: {user, role, csrf_token, expires_at}, or null. */
export const session = { current: null };

const ROLE_RANK = { read_only: 0, analyst: 1, admin: 2 };

/** Whether the signed-in user's role is at least `role`. */
export function can(role) {
  const mine = session.current ? ROLE_RANK[session.current.role] : undefined;
  return mine !== undefined && mine >= ROLE_RANK[role];
}

/** An error answer of the API: its status and the server's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Listeners told when the API answers 401 (the session ended). */
const signedOutListeners = [];
export function onSignedOut(listener) {
  signedOutListeners.push(listener);
}

/**
 * Calls the API. GETs carry the session cookie only; other methods also carry the CSRF
 * token. Answers the parsed JSON (or null), or throws an ApiError with the server's message.
 */
export async function api(method, path, body, options = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && session.current) {
    headers["X-CSRF-Token"] = session.current.csrf_token;
  }
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `the server cannot be reached (${e.message})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message = data && typeof data === "object" && data.error ? data.error : `${response.status} ${response.statusText}`;
    if (response.status === 401 && !options.quietUnauthorized) {
      for (const listener of signedOutListeners) listener(message);
    }
    throw new ApiError(response.status, message);
  }
  return data;
}

/**
 * Builds an element. `attrs` keys: `class`, `text`, `on` ({event: handler}), `dataset`
 * ({key: value}), `checked`/`disabled`/`selected`/`value` (properties), anything else an
 * attribute. Children are nodes, strings (as text), arrays of those, or null (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** Like `h`, in the SVG namespace. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

const PROPERTIES = new Set(["checked", "disabled", "selected", "value", "open", "hidden"]);

function applyAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") {
      el.textContent = String(value);
    } else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined && v !== null) el.dataset[k] = String(v);
      }
    } else if (PROPERTIES.has(key)) {
      el[key] = value;
    } else if (key.startsWith("on")) {
      throw new Error(`handlers go under "on", not as the attribute ${key}`);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link inside the UI. */
export function link(route, text, attrs = {}) {
  return h("a", { href: `#${route}`, ...attrs }, text);
}

/** A link to another site (a vendor dashboard), only for http(s) URLs; else plain text. */
export function externalLink(url, text) {
  if (typeof url === "string" && /^https?:\/\//i.test(url)) {
    return h("a", { href: url, target: "_blank", rel: "noopener noreferrer", class: "external" }, text ?? url);
  }
  return text ?? url ?? "";
}

/** A small coloured label; `kind` picks the colour (a state or disposition name). */
export function badge(text, kind, attrs = {}) {
  const cls = `badge badge-${String(kind ?? text).replace(/[^a-z0-9_-]/gi, "_").toLowerCase()}`;
  return h("span", { class: cls, ...attrs }, text);
}

/** The time as `2026-12-04 10:00:00` in UTC, with the raw value as a tooltip. */
export function time(value) {
  if (!value) return h("span", { class: "muted" }, "–");
  return h("time", { datetime: value, title: value }, formatTime(value));
}

export function formatTime(value) {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, "");
}

/** A value of any JSON type, as text. */
export function text(value) {
  if (value === null || value === undefined || value === "") return "";
  if (Array.isArray(value)) return value.map(text).filter((v) => v !== "").join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A table: `columns` are [{title, cell(row) -> node|string, class?, test?}]. */
export function table(columns, rows, attrs = {}) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class, scope: "col" }, c.title))));
  const body = h(
    "tbody",
    {},
    rows.map((row, i) =>
      h(
        "tr",
        attrs.rowAttrs ? attrs.rowAttrs(row, i) : {},
        columns.map((c) => h("td", { class: c.class, dataset: c.test ? { test: c.test } : undefined }, c.cell(row))),
      ),
    ),
  );
  const { rowAttrs, empty, ...rest } = attrs;
  const tbl = h("table", { class: "grid", ...rest }, head, body);
  if (rows.length === 0) {
    return h("div", {}, tbl, h("p", { class: "empty" }, empty ?? "Nothing to show."));
  }
  return tbl;
}

/** A definition list from [label, value] pairs; pairs with an empty value are skipped. */
export function facts(pairs, attrs = {}) {
  const items = [];
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === "" || (Array.isArray(value) && value.length === 0)) continue;
    items.push(h("dt", {}, label), h("dd", {}, value instanceof Node ? value : text(value)));
  }
  return h("dl", { class: "facts", ...attrs }, items);
}

/** A section with a heading. */
export function section(title, attrs, ...children) {
  return h("section", { class: "panel", ...attrs }, h("h2", {}, title), ...children);
}

/** A message line: `kind` is `error`, `info` or `ok`. */
export function notice(kind, message, attrs = {}) {
  return h("p", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status", ...attrs }, message);
}

/** Parses `a=1&b=2` into a plain object, dropping empty values. */
export function parseQuery(query) {
  const out = {};
  for (const [k, v] of new URLSearchParams(query || "")) {
    if (v !== "") out[k] = v;
  }
  return out;
}

/** Builds `a=1&b=2` from an object, dropping empty values. */
export function buildQuery(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") search.set(k, String(v));
  }
  return search.toString();
}

/** A button that runs `action` once at a time, showing `busy` meanwhile. */
export function actionButton(label, action, attrs = {}) {
  const button = h("button", { type: "button", ...attrs }, label);
  button.addEventListener("click", async () => {
    if (button.disabled) return;
    button.disabled = true;
    button.classList.add("busy");
    try {
      await action(button);
    } finally {
      button.disabled = false;
      button.classList.remove("busy");
    }
  });
  return button;
}

/** Pretty JSON, for the raw views and editors. */
export function json(value) {
  return JSON.stringify(value, null, 2);
}

/** "First page" and "Next page" links for cursor paging. */
export function pager(route, query, next) {
  const { cursor, ...rest } = query;
  const first = cursor ? link(`${route}?${buildQuery(rest)}`, "« First page", { id: "page-first" }) : null;
  const nextLink = next != null ? link(`${route}?${buildQuery({ ...rest, cursor: next })}`, "Next page »", { id: "page-next" }) : null;
  if (!first && !nextLink) return null;
  return h("div", { class: "pager" }, first, nextLink);
}

/** A role's name in words. */
export function roleLabel(role) {
  return { read_only: "read only", analyst: "analyst", admin: "admin" }[role] ?? role;
}
