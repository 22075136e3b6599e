/* Sign-up page: create the account, then continue to email verification. */
import { signup } from "../api.js";
import { bindForm } from "../forms.js";
import { navigate, withQuery } from "../urls.js";

const form = document.getElementById("signup-form");
form.elements.username.focus();

bindForm(form, {
  submit: (values) => signup(values),
  onSuccess(result, values) {
    const user = result.data && result.data.user;
    navigate(withQuery("/verify", { email: (user && user.email) || values.email }));
    return true;
  },
});
