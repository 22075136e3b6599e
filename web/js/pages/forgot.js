/* Forgot-password page: request a reset link by email. */
import { forgotPassword } from "../api.js";
import { bindForm } from "../forms.js";
import { queryParam } from "../urls.js";

const form = document.getElementById("forgot-form");
const prefill = queryParam("email");
if (prefill) form.elements.email.value = prefill;
form.elements.email.focus();

bindForm(form, {
  submit: (values) => forgotPassword(values),
  onSuccess(result, values, ui) {
    ui.setMessage("If an account exists for that email, a reset link is on its way.", "success");
  },
});
