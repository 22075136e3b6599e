/* Forgot-password page: request a reset link by email. */
import { forgotPassword } from "../api.js";
import { bindForm } from "../forms.js";
import { looksLikeEmail, queryParam, withQuery } from "../urls.js";

const form = document.getElementById("forgot-form");
// Typed on the sign-in page already ("Forgot password?" carries it): no need to ask again.
const prefill = queryParam("email");
if (prefill) form.elements.email.value = prefill;
form.elements.email.focus();

// "Back to sign in" carries the email the other way.
const back = document.getElementById("back-to-signin");
function updateBackLink() {
  const email = form.elements.email.value.trim();
  if (back) back.href = withQuery("/signin", { login: looksLikeEmail(email) ? email : "" });
}
for (const type of ["input", "change"]) form.elements.email.addEventListener(type, updateBackLink);
updateBackLink();

bindForm(form, {
  submit: (values) => forgotPassword(values),
  onSuccess(result, values, ui) {
    ui.setMessage("If an account exists for that email, a reset link is on its way.", "success");
  },
});
