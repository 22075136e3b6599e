/* Verify page: enter the 6-digit code, or ask for a new one. */
import { resendVerification, verifyEmail } from "../api.js";
import { bindForm } from "../forms.js";
import { keepNextOnLinks, navigate, nextFromQuery, queryParam, withNext, withQuery } from "../urls.js";

const verifyForm = document.getElementById("verify-form");
const resendForm = document.getElementById("resend-form");
const verifyEmailInput = verifyForm.elements.email;
const resendEmailInput = resendForm.elements.email;
const sentTo = document.getElementById("verify-sent-to");

const email = queryParam("email") || "";
const next = nextFromQuery();
keepNextOnLinks(next);
verifyEmailInput.value = email;
resendEmailInput.value = email;
if (email) {
  const strong = document.createElement("strong");
  strong.textContent = email;
  sentTo.replaceChildren("We sent a 6-digit code to ", strong, ". Enter it below to activate your account.");
}
(email ? verifyForm.elements.code : verifyEmailInput).focus();

// The code is 6 digits: drop anything else (spaces/dashes from pasted codes).
const codeInput = verifyForm.elements.code;
codeInput.addEventListener("input", () => {
  const digits = codeInput.value.replace(/\D/g, "").slice(0, 6);
  if (digits !== codeInput.value) codeInput.value = digits;
});

// Keep both email fields in step: typing in one updates the other.
verifyEmailInput.addEventListener("input", () => (resendEmailInput.value = verifyEmailInput.value));
resendEmailInput.addEventListener("input", () => (verifyEmailInput.value = resendEmailInput.value));

bindForm(verifyForm, {
  submit: (values) => verifyEmail({ email: values.email, code: values.code.replace(/[\s-]/g, "") }),
  onSuccess(result, values) {
    const user = result.data && result.data.user;
    const signin = withQuery("/signin", { verified: "1", login: (user && user.email) || values.email });
    navigate(withNext(signin, next));
    return true;
  },
});

bindForm(resendForm, {
  submit: (values) => resendVerification(values),
  onSuccess(result, values, ui) {
    ui.setMessage("If that account needs verification, a new code is on its way.", "success");
  },
});
