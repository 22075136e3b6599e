/*
 * Small formatting and parsing helpers shared by pages (no DOM).
 */

/** Seconds → "h:mm:ss" (e.g. 0:04:05, 12:00:00). */
export function formatDuration(seconds) {
  const total = Math.max(0, Math.floor(Number(seconds) || 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
}

/** Epoch seconds → "Nov 27, 2026, 10:32 AM" in the viewer's locale (24-hour where it is); "Today, 10:32" for today. */
export function formatWhen(epochSeconds, now = new Date()) {
  const date = new Date(Number(epochSeconds) * 1000);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" }); // locale clock
  if (date.toDateString() === now.toDateString()) return `Today, ${time}`;
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (date.toDateString() === yesterday.toDateString()) return `Yesterday, ${time}`;
  const day = date.toLocaleDateString(undefined, {
    month: "short",
    day: "numeric",
    year: date.getFullYear() === now.getFullYear() ? undefined : "numeric",
  });
  return `${day}, ${time}`;
}

const CODE_RE = /([a-z]{3})-?([a-z]{4})-?([a-z]{3})/i;

/**
 * A room code from what someone typed or pasted: "abc-defg-hij", "abcdefghij", or any link
 * containing /r/abc-defg-hij. Returns the normalised code or null.
 */
export function parseRoomCode(input) {
  const text = String(input || "").trim();
  if (!text) return null;
  const fromLink = text.match(/\/r\/([a-z-]{10,12})(?:[/?#]|$)/i);
  const candidate = fromLink ? fromLink[1] : text;
  const match = candidate.match(new RegExp(`^${CODE_RE.source}$`, "i"));
  if (!match) return null;
  return `${match[1]}-${match[2]}-${match[3]}`.toLowerCase();
}

/** The shareable address of a room on this server. */
export function roomLink(code, origin = globalThis.location.origin) {
  return `${origin}/r/${encodeURIComponent(code)}`;
}
