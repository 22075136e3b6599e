/*
 * URL helpers: query parameters, safe post-login redirects, navigation.
 * DOM access only in keepNextOnLinks (links marked data-keep-next).
 */

/** Read one query-string parameter of the current page (null if absent). */
export function queryParam(name) {
  return new URLSearchParams(window.location.search).get(name);
}

/**
 * Validate a `next` redirect target: it must be a same-origin path that
 * starts with "/" (not "//" or "/\", which browsers treat as another host).
 * Returns the normalised path (+ query + hash) or null.
 */
export function safeNextPath(raw, origin = window.location.origin) {
  if (typeof raw !== "string" || raw.length === 0 || raw.length > 2048) return null;
  if (raw[0] !== "/" || raw[1] === "/" || raw[1] === "\\") return null;
  if (/[\u0000-\u001f\u007f\\]/.test(raw)) return null;
  try {
    const url = new URL(raw, origin);
    if (url.origin !== origin) return null;
    return url.pathname + url.search + url.hash;
  } catch {
    return null;
  }
}

/** The page's own `next` parameter when it is a safe same-site path, else null. */
export function nextFromQuery() {
  return safeNextPath(queryParam("next"));
}

/** `href` (a same-site path, possibly with a query) with `next` added; unchanged when no next. */
export function withNext(href, next) {
  if (!next) return href;
  const url = new URL(href, window.location.origin);
  url.searchParams.set("next", next);
  return url.pathname + url.search + url.hash;
}

/** Add `next` to every `a[data-keep-next]` link, so it survives sign-in ↔ sign-up ↔ verify. */
export function keepNextOnLinks(next, root = document) {
  if (!next) return;
  for (const link of root.querySelectorAll("a[data-keep-next]")) {
    link.href = withNext(link.getAttribute("href"), next);
  }
}

/*
 * The mail's one-click verification link cannot carry `next` (the server builds it), so
 * sign-up remembers `next` in this browser for the verify-done page; it expires after a day
 * and is re-validated when read.
 */
const NEXT_KEY = "meet.next";
const NEXT_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/** Remember a safe `next` in this browser (or forget it when null). */
export function rememberNext(next) {
  try {
    if (next) localStorage.setItem(NEXT_KEY, JSON.stringify({ next, at: Date.now() }));
    else localStorage.removeItem(NEXT_KEY);
  } catch {
    // Storage disabled (private mode, policy): the code-entry path still carries next.
  }
}

/** The remembered `next`, if still fresh and safe; else null. */
export function recallNext() {
  try {
    const saved = JSON.parse(localStorage.getItem(NEXT_KEY) || "null");
    if (!saved || typeof saved.at !== "number" || Date.now() - saved.at > NEXT_MAX_AGE_MS) return null;
    return safeNextPath(saved.next);
  } catch {
    return null;
  }
}

/** Build "path?k=v" from a params object, skipping empty values. */
export function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

/** Go to another page (adds a history entry). */
export function navigate(url) {
  window.location.assign(url);
}

/** Rough "is this an email address?" check, used to pick a link target. */
export function looksLikeEmail(value) {
  return typeof value === "string" && /^[^\s@]+@[^\s@]+$/.test(value);
}
