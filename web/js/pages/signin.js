/* Sign-in page: login with email or username, then follow a safe `next`. */
import { login } from "../api.js";
import { bindForm } from "../forms.js";
import {
  keepNextOnLinks, looksLikeEmail, navigate, nextFromQuery, queryParam, rememberNext, withNext, withQuery,
} from "../urls.js";

const form = document.getElementById("signin-form");
const notice = document.getElementById("signin-notice");

// Prefill from links such as /signin?verified=1&login=ann@example.com
const prefill = queryParam("login");
if (prefill) form.elements.login.value = prefill;

if (queryParam("verified") === "1") {
  notice.textContent = "Email verified — sign in to continue.";
} else if (queryParam("reset") === "1") {
  notice.textContent = "Your password has been reset — sign in with your new password.";
}

// Carry `next` over to the sign-up and verify links so new users land in the same place.
const next = nextFromQuery();
keepNextOnLinks(next);

// "Forgot password?" carries the email typed so far, so the reset page need not ask again.
const forgotLink = document.getElementById("forgot-link");
function updateForgotLink() {
  const login = form.elements.login.value.trim();
  if (forgotLink) forgotLink.href = withQuery("/forgot", { email: looksLikeEmail(login) ? login : "" });
}
for (const type of ["input", "change"]) form.elements.login.addEventListener(type, updateForgotLink);
updateForgotLink();

(prefill ? form.elements.password : form.elements.login).focus();

bindForm(form, {
  submit: (values) => login(values),
  onSuccess() {
    rememberNext(null); // signed in: a remembered link must not redirect a later visit
    navigate(next || "/dashboard");
    return true; // stay busy while the browser navigates
  },
  onError(result, values, ui) {
    if (result.status !== 403 || !result.error || result.error.code !== "not_verified") return false;
    const email = looksLikeEmail(values.login) ? values.login : "";
    const link = document.createElement("a");
    link.href = withNext(withQuery("/verify", { email }), next);
    link.textContent = "Enter your verification code";
    ui.setMessage([result.error.message, " ", link], "error");
    return true;
  },
});
