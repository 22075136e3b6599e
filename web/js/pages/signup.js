/*
 * Sign-up page: create the account, then continue to email verification.
 *
 * The server answers the same whether or not the email was registered already (it mails the
 * owner instead), so success always leads to the verify page. Sign-up may be open, by
 * invitation (the link carries ?invite=TOKEN, and usually &email=) or closed: the page asks
 * GET /api/auth/config and says so.
 */
import { request, signup } from "../api.js";
import { bindForm } from "../forms.js";
import { keepNextOnLinks, navigate, nextFromQuery, queryParam, rememberNext, withNext, withQuery } from "../urls.js";

const form = document.getElementById("signup-form");
const lede = document.querySelector("#main .card-lede");
const invite = queryParam("invite");
const invitedEmail = queryParam("email");
// Where to land after signing in (a meeting link, say): kept through verify and sign-in.
const next = nextFromQuery();
keepNextOnLinks(next);

if (invitedEmail) form.elements.email.value = invitedEmail;
form.elements.username.focus();

/** Show `text` in place of the page's lede. */
function announce(text) {
  if (lede) lede.textContent = text;
}

/** Sign-up is closed: say so instead of offering a form that can only fail. */
function showClosed(message) {
  announce(message || "Sign-up is closed on this server. Ask its administrator for an account.");
  form.hidden = true;
}

async function applyMode() {
  const result = await request("GET", "/api/auth/config");
  const mode = result.ok && result.data ? result.data.signup : "open";
  if (mode === "closed") showClosed();
  else if (mode === "invite") {
    announce(
      invite
        ? "You were invited: create your account with the invited email address."
        : "Sign-up on this server is by invitation only. Open the link from your invitation mail.",
    );
  }
}

applyMode();

// The server's rules (meet/accounts.py), checked here so every bad field is named at once;
// the server stops at the first one it finds.
const USERNAME_RE = /^[A-Za-z0-9_.-]{3,32}$/;
const EMAIL_RE = /^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$/;
const PASSWORD_MIN = 8;
const PASSWORD_MAX = 1024;

/** {field: message} for each field the server would refuse. */
function validate({ username, email, password }) {
  const errors = {};
  if (!USERNAME_RE.test(username)) {
    errors.username = username
      ? "Usernames are 3–32 characters of letters, digits, '_', '.' and '-'."
      : "Choose a username.";
  }
  if (!email) errors.email = "Enter your email address.";
  else if (email.length > 254 || !EMAIL_RE.test(email)) errors.email = "That does not look like an email address.";
  if (!password) errors.password = "Choose a password.";
  else if (password.length < PASSWORD_MIN || password.length > PASSWORD_MAX) {
    errors.password = `Passwords are ${PASSWORD_MIN} to ${PASSWORD_MAX} characters long.`;
  }
  return errors;
}

bindForm(form, {
  validate,
  submit: ({ username, email, password }) =>
    signup({ username, email, password, invite }),
  onSuccess(result, values) {
    const email = (result.data && result.data.email) || values.email;
    rememberNext(next); // for the mail's one-click link, which cannot carry it
    navigate(withNext(withQuery("/verify", { email }), next));
    return true;
  },
  onError(result) {
    if (result.error && result.error.code === "signup_closed") {
      showClosed(result.error.message);
      return true;
    }
    return false;
  },
});
