/*
 * Dashboard: the signed-in user and sign out, plus meetings — start one, join by code or
 * link, my meetings, recent calls, who is online (call them) and incoming calls.
 */
import { createRoom, getRoom, logout, me } from "../api.js";
import { RecentCalls } from "../dashboard/history.js";
import { PresencePanel } from "../dashboard/presence.js";
import { MyRooms } from "../dashboard/rooms.js";
import { bindForm, errorText } from "../forms.js";
import { parseRoomCode } from "../format.js";
import { navigate } from "../urls.js";

const SIGNIN_REDIRECT = "/signin?next=/dashboard";

const main = document.getElementById("main");
const loading = document.getElementById("dashboard-loading");
const pageMessage = document.getElementById("page-message");
const retryButton = document.getElementById("retry");
const userChip = document.getElementById("user-chip");
const signoutButton = document.getElementById("signout");
const welcome = document.getElementById("welcome");

/** Format created_at (ISO string or epoch seconds/ms) as a readable date. */
function formatDate(value) {
  if (value === null || value === undefined || value === "") return "";
  let date;
  if (typeof value === "number") date = new Date(value < 1e12 ? value * 1000 : value);
  else date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleDateString(undefined, { year: "numeric", month: "long", day: "numeric" });
}

function render(user) {
  const username = String(user.username || "");
  document.getElementById("user-name").textContent = username;
  document.getElementById("user-email").textContent = user.email || "";
  document.getElementById("user-avatar").textContent = username.charAt(0).toUpperCase();
  document.getElementById("admin-badge").hidden = !user.is_admin;
  document.getElementById("welcome-name").textContent = username;
  document.getElementById("welcome-email").textContent = user.email || "";
  const since = formatDate(user.created_at);
  document.getElementById("member-since").textContent = since ? ` Member since ${since}.` : "";

  userChip.hidden = false;
  signoutButton.hidden = false;
  welcome.hidden = false;
}

// ---- Meetings ------------------------------------------------------------------------

let meetingsUser = null;

/** Mount the meeting sections once the user is known (only once, even after a reload). */
function mountMeetings(user) {
  if (meetingsUser) return;
  meetingsUser = user;
  document.getElementById("meetings").hidden = false;

  const rooms = new MyRooms();
  const history = new RecentCalls();
  const presence = new PresencePanel({
    me: user,
    openRooms: () => rooms.openRooms(),
    roomsChanged: () => rooms.refresh(),
  });
  rooms.refresh();
  history.load();
  presence.start();
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) {
      rooms.refresh();
      history.load();
    }
  });

  bindForm(document.getElementById("new-meeting-form"), {
    submit: ({ title }) => createRoom({ title: title || undefined }),
    onSuccess(result) {
      navigate(`/r/${encodeURIComponent(result.data.room.code)}`);
      return true; // stay busy while the browser navigates
    },
  });

  bindForm(document.getElementById("join-form"), {
    async submit({ code: raw }) {
      const code = parseRoomCode(raw);
      if (!code) {
        const message = raw
          ? "That doesn't look like a meeting code. Codes look like abc-defg-hij."
          : "Enter a meeting code or paste a meeting link.";
        return { ok: false, status: 400, data: null, error: { code: "invalid_code", message, field: "code" } };
      }
      const result = await getRoom(code);
      if (result.ok && result.data.room.status === "ended") {
        const message = "That meeting has ended. Start a new one instead.";
        return { ok: false, status: 410, data: null, error: { code: "room_ended", message, field: "code" } };
      }
      return result.ok ? { ...result, code } : result;
    },
    onSuccess(result) {
      navigate(`/r/${encodeURIComponent(result.code)}`);
      return true;
    },
    onError(result, values, ui) {
      if (result.status !== 404) return false;
      ui.setFieldError("code", "There is no meeting with that code. Check it and try again.");
      return true;
    },
  });
}

function setPageMessage(text) {
  pageMessage.textContent = text;
  retryButton.hidden = !text;
}

async function load() {
  main.setAttribute("aria-busy", "true");
  loading.hidden = false;
  setPageMessage("");
  const result = await me();
  loading.hidden = true;
  main.setAttribute("aria-busy", "false");

  if (result.status === 401) {
    navigate(SIGNIN_REDIRECT);
    return;
  }
  if (!result.ok || !result.data || !result.data.user) {
    setPageMessage(result.ok ? "Could not load your account. Please try again." : errorText(result));
    return;
  }
  render(result.data.user);
  mountMeetings(result.data.user);
}

signoutButton.addEventListener("click", async () => {
  signoutButton.disabled = true;
  signoutButton.setAttribute("aria-busy", "true");
  const result = await logout();
  if (result.ok || result.status === 401) {
    navigate("/signin");
    return;
  }
  setPageMessage(errorText(result));
  retryButton.hidden = true;
  signoutButton.disabled = false;
  signoutButton.setAttribute("aria-busy", "false");
});

retryButton.addEventListener("click", load);

// Coming back via the back/forward cache (e.g. after signing out): re-check.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) load();
});

load();
