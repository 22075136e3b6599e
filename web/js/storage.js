/*
 * What this browser remembers between visits (localStorage), as JSON. Storage may be disabled
 * (private mode, a policy) or hold garbage: reading then gives null, writing does nothing — only
 * convenience is lost.
 */

/** The value stored under `key`, or null (nothing, garbage, or storage refused). */
export function readJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) || "null");
  } catch {
    return null;
  }
}

/** Store `value` under `key` (null removes it); a refusal is ignored. */
export function writeJson(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, JSON.stringify(value));
  } catch {
    // storage disabled: the value lasts for this page only
  }
}
