/*
 * URL helpers: query parameters, safe post-login redirects, navigation.
 * No DOM access (only window.location).
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
