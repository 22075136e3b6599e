/*
 * meet JSON API client. Protocol only: no DOM access here.
 *
 * Every function resolves (never rejects) to a result object:
 *   { ok, status, data, error, retryAfter }
 *   - ok:         true for 2xx responses
 *   - status:     HTTP status, or 0 when the server could not be reached
 *   - data:       parsed JSON body (or null)
 *   - error:      { code, message, field? } when !ok, else null
 *   - retryAfter: seconds from the Retry-After header (or null)
 */

export const NETWORK_ERROR_MESSAGE = "Could not reach the server. Check your connection and try again.";

const TIMEOUT_MS = 20000;

/** Parse a Retry-After header (delta-seconds or HTTP date) into seconds. */
export function parseRetryAfter(value, now = Date.now()) {
  if (!value) return null;
  const trimmed = String(value).trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

/** Build the error object for a failed response, always in the documented shape. */
function errorFrom(status, data) {
  const err = data && typeof data === "object" ? data.error : null;
  if (err && typeof err === "object" && typeof err.message === "string") {
    const out = { code: String(err.code || "error"), message: err.message };
    if (typeof err.field === "string" && err.field) out.field = err.field;
    return out;
  }
  if (status === 429) return { code: "throttled", message: "Too many attempts. Please wait a moment and try again." };
  if (status >= 500) return { code: "server_error", message: "Something went wrong on the server. Please try again." };
  return { code: `http_${status}`, message: `The request failed (HTTP ${status}). Please try again.` };
}

/** Low-level JSON request against the same origin. */
export async function request(method, path, body) {
  const controller = typeof AbortController === "function" ? new AbortController() : null;
  const timer = controller ? setTimeout(() => controller.abort(), TIMEOUT_MS) : null;
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      cache: "no-store",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller ? controller.signal : undefined,
    });
  } catch {
    if (timer) clearTimeout(timer);
    return { ok: false, status: 0, data: null, error: { code: "network_error", message: NETWORK_ERROR_MESSAGE }, retryAfter: null };
  }

  let data = null;
  try {
    const text = await response.text();
    if (text) data = JSON.parse(text);
  } catch {
    data = null; // empty or non-JSON body
  } finally {
    if (timer) clearTimeout(timer);
  }

  return {
    ok: response.ok,
    status: response.status,
    data,
    error: response.ok ? null : errorFrom(response.status, data),
    retryAfter: parseRetryAfter(response.headers.get("Retry-After")),
  };
}

// ---- One function per endpoint -------------------------------------------

/** POST /api/auth/signup → 201 {ok, email}, the same whether or not the email is registered */
export const signup = ({ username, email, password, invite }) =>
  request("POST", "/api/auth/signup", invite ? { username, email, password, invite } : { username, email, password });

/** POST /api/auth/verify → 200 {user} */
export const verifyEmail = ({ email, code }) => request("POST", "/api/auth/verify", { email, code });

/** POST /api/auth/verify/resend → 202 (always) */
export const resendVerification = ({ email }) => request("POST", "/api/auth/verify/resend", { email });

/** POST /api/auth/login → 200 {user, token}; sets the session cookie */
export const login = ({ login: loginName, password }) =>
  request("POST", "/api/auth/login", { login: loginName, password });

/** POST /api/auth/logout → 200 */
export const logout = () => request("POST", "/api/auth/logout", {});

/** GET /api/auth/me → 200 {user} or 401 */
export const me = () => request("GET", "/api/auth/me");

/** POST /api/auth/forgot → 202 (always) */
export const forgotPassword = ({ email }) => request("POST", "/api/auth/forgot", { email });

/** POST /api/auth/reset → 200, or 400 for a bad token */
export const resetPassword = ({ token, password }) => request("POST", "/api/auth/reset", { token, password });

// ---- Meetings ----------------------------------------------------------------

/** "path?k=v" skipping empty values. */
export function withParams(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

const roomPath = (code) => `/api/rooms/${encodeURIComponent(code)}`;

/** POST /api/rooms → 201 {room}; title and max_participants are optional. */
export const createRoom = ({ title, max_participants: maxParticipants } = {}) => {
  const body = {};
  if (title) body.title = title;
  if (maxParticipants) body.max_participants = maxParticipants;
  return request("POST", "/api/rooms", body);
};

/** GET /api/rooms → 200 {rooms: [room + {id, participants}]}, newest first. */
export const listRooms = ({ limit, before } = {}) => request("GET", withParams("/api/rooms", { limit, before }));

/** GET /api/rooms/{code} → 200 {room: room + {participants: [participant]}} */
export const getRoom = (code) => request("GET", roomPath(code));

/** POST /api/rooms/{code}/join → 200 {room, ws_url, ice_servers}; 404 / 410 / 403 when refused. */
export const joinRoom = (code) => request("POST", `${roomPath(code)}/join`, {});

/**
 * PATCH /api/rooms/{code} (hosts and co-hosts) with {title?, locked?, max_participants?,
 * guests? ("off" | "lobby" | "open"), lobby?, reactions?} → 200 {room}
 */
export const updateRoom = (code, changes) => request("PATCH", roomPath(code), changes);

/** GET /api/rooms/{code}/guest (anyone with the link) → 200 {room: {code, title, host: {username}, status, locked, guests}} */
export const guestPreview = (code) => request("GET", `${roomPath(code)}/guest`);

/**
 * POST /api/rooms/{code}/guest {name} (no account) → 200 {token, expires_at, guest, ws_url}; also
 * sets the meet_guest cookie that the room's WebSocket accepts. Refusals: 400 invalid_name,
 * 403 guests_off / room_locked / removed, 410 room_ended, 429 too_many_guests (Retry-After).
 */
export const guestPass = (code, name) => request("POST", `${roomPath(code)}/guest`, { name });

/** POST /api/rooms/{code}/end (host only) → 200 {room} */
export const endRoom = (code) => request("POST", `${roomPath(code)}/end`, {});

/** GET /api/rooms/{code}/messages → 200 {messages (newest first), next_before} */
export const roomMessages = (code, { limit, before, q } = {}) =>
  request("GET", withParams(`${roomPath(code)}/messages`, { limit, before, q }));

/** GET /api/calls → 200 {calls (newest first), next_before} */
export const calls = ({ limit, before } = {}) => request("GET", withParams("/api/calls", { limit, before }));

/** Address of a room's attendance report (host only); "csv" downloads a spreadsheet. */
export const attendanceUrl = (code, format = "csv") =>
  withParams(`${roomPath(code)}/attendance`, { format });
