/*
 * The administration API (/api/admin/*). Protocol only: no DOM access here.
 * Every function resolves to the result object of ../api.js ({ ok, status, data, error, … }).
 */

import { request, withParams } from "../api.js";

const userPath = (id) => `/api/admin/users/${encodeURIComponent(id)}`;
const roomPath = (code) => `/api/admin/rooms/${encodeURIComponent(code)}`;

/** GET /api/admin/users → {total, limit, offset, users} */
export const searchUsers = ({ q, limit, offset } = {}) => request("GET", withParams("/api/admin/users", { q, limit, offset }));

/** POST /api/admin/users → 201 {user} */
export const createUser = ({ username, email, password, admin, verified }) =>
  request("POST", "/api/admin/users", { username, email, password, admin: Boolean(admin), verified: Boolean(verified) });

/** PATCH /api/admin/users/{id} with any of {is_admin, disabled, verified: true} → {user} */
export const changeUser = (id, changes) => request("PATCH", userPath(id), changes);

/** DELETE /api/admin/users/{id} → {ok} */
export const deleteUser = (id) => request("DELETE", userPath(id));

/** POST /api/admin/users/{id}/reset-throttles → {cleared} */
export const resetThrottles = (id) => request("POST", `${userPath(id)}/reset-throttles`, {});

/** POST /api/admin/invitations → 201 {link} */
export const invite = ({ email, send }) => request("POST", "/api/admin/invitations", { email, send: Boolean(send) });

/** GET /api/admin/rooms → {total, limit, offset, live, rooms} (live rooms first) */
export const searchRooms = ({ q, limit, offset } = {}) => request("GET", withParams("/api/admin/rooms", { q, limit, offset }));

/** POST /api/admin/rooms/{code}/end → {room} */
export const endRoom = (code) => request("POST", `${roomPath(code)}/end`, {});

/** DELETE /api/admin/rooms/{code}/participants/{peer_id} → {removed} */
export const removeParticipant = (code, peerId) =>
  request("DELETE", `${roomPath(code)}/participants/${encodeURIComponent(peerId)}`);

/** GET /api/admin/server → {version, uptime_s, relay, database, mail, …} */
export const serverState = () => request("GET", "/api/admin/server");

/** GET /api/admin/audit → {total, limit, offset, entries} newest first */
export const auditLog = ({ limit, offset } = {}) => request("GET", withParams("/api/admin/audit", { limit, offset }));
