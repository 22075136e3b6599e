/* Dashboard shell: load the signed-in user, render the header, sign out. */
import { logout, me } from "../api.js";
import { errorText } from "../forms.js";
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
