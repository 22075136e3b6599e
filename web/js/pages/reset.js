/* Reset-password page: the token comes from the emailed link (?token=). */
import { resetPassword } from "../api.js";
import { bindForm } from "../forms.js";
import { navigate, queryParam } from "../urls.js";

const REDIRECT_DELAY_MS = 2500;
const SIGNIN_URL = "/signin?reset=1";

const form = document.getElementById("reset-form");
const token = queryParam("token") || "";
form.elements.token.value = token;

/** "… request a new link" message with a link to /forgot. */
function linkToForgot(text) {
  const link = document.createElement("a");
  link.href = "/forgot";
  link.textContent = "Request a new reset link";
  return [text, " ", link];
}

const ui = bindForm(form, {
  submit: (values) => resetPassword(values),
  onSuccess(result, values, formUi) {
    const link = document.createElement("a");
    link.href = SIGNIN_URL;
    link.textContent = "Sign in";
    formUi.setMessage(["Your password has been changed. ", link, " with your new password."], "success");
    form.elements.password.disabled = true;
    setTimeout(() => navigate(SIGNIN_URL), REDIRECT_DELAY_MS);
    return true; // keep the submit button disabled
  },
  onError(result, values, formUi) {
    // Password problems are shown at the field; other 400s mean a bad token.
    const error = result.error || {};
    if (result.status !== 400 || error.field === "password" || /password/i.test(error.code || "")) return false;
    formUi.setMessage(linkToForgot(error.message || "This reset link is invalid or has expired."), "error");
    return true;
  },
});

if (token) {
  form.elements.password.focus();
} else {
  ui.setMessage(linkToForgot("This page needs the reset link from your email."), "error");
  form.querySelector('button[type="submit"]').disabled = true;
}
