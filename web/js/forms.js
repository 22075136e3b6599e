/*
 * Generic form binding (UI only; API calls are passed in by page modules).
 *
 *   bindForm(form, { validate, submit, onSuccess, onError })
 *     validate(values)            -> {field: message} of every bad field (optional): all are
 *                                    shown at once and nothing is sent while any remain
 *     submit(values)              -> Promise<api result>  (see api.js)
 *     onSuccess(result, values, ui) -> return true to keep the form busy
 *                                    (e.g. while navigating away)
 *     onError(result, values, ui)   -> return true if it showed the error itself
 *
 * Markup conventions:
 *   .field > input[name] + .field-error   per-field message (aria-describedby)
 *   .form-message[role=alert]             form-level message
 *   button[type=submit]                   disabled + aria-busy while pending
 */

import { NETWORK_ERROR_MESSAGE } from "./api.js";

/** Collect named, enabled controls; trims everything except passwords. */
export function fieldValues(form) {
  const values = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled || el.type === "submit" || el.type === "button") continue;
    const isSecret = el.name === "password" || el.type === "password" || el.dataset.secret !== undefined;
    values[el.name] = isSecret ? el.value : el.value.trim();
  }
  return values;
}

/** "in 1 minute", "in 45 seconds" */
function formatWait(seconds) {
  if (seconds >= 90) return `${Math.ceil(seconds / 60)} minutes`;
  if (seconds >= 60) return "1 minute";
  return seconds === 1 ? "1 second" : `${seconds} seconds`;
}

/** Human text for a failed api result. */
export function errorText(result) {
  if (result.status === 0) return NETWORK_ERROR_MESSAGE;
  let text = (result.error && result.error.message) || "Something went wrong. Please try again.";
  if (result.status === 429 && result.retryAfter) text += ` Try again in ${formatWait(result.retryAfter)}.`;
  return text;
}

/** Controller for the messages and busy state of one form. */
export function createFormUI(form) {
  const messageEl = form.querySelector(".form-message");
  const submitButton = form.querySelector('button[type="submit"]');
  let pending = false;

  /** A visible control for `name`, or null (hidden inputs don't count). */
  function visibleControl(name) {
    const el = form.elements.namedItem(name);
    if (!el || !("type" in el) || el.type === "hidden") return null;
    return el;
  }

  function errorElementFor(control) {
    const wrapper = control.closest(".field");
    return wrapper ? wrapper.querySelector(".field-error") : null;
  }

  const ui = {
    form,
    get pending() {
      return pending;
    },

    /** Disable the submit button and mark the form busy (or undo it). */
    setPending(on) {
      pending = on;
      form.setAttribute("aria-busy", on ? "true" : "false");
      if (submitButton) {
        submitButton.disabled = on;
        submitButton.setAttribute("aria-busy", on ? "true" : "false");
      }
    },

    /** Show a form-level message. `content`: string, Node, or array of both. */
    setMessage(content, kind = "error") {
      if (!messageEl) return;
      const parts = Array.isArray(content) ? content : [content];
      messageEl.dataset.kind = kind;
      messageEl.replaceChildren(...parts);
    },

    clearMessage() {
      if (messageEl) messageEl.replaceChildren();
    },

    /** Show `text` next to the field `name`; false if there is no such visible field. */
    setFieldError(name, text) {
      const control = visibleControl(name);
      const errorEl = control && errorElementFor(control);
      if (!control || !errorEl) return false;
      errorEl.textContent = text;
      control.setAttribute("aria-invalid", "true");
      return true;
    },

    clearFieldError(name) {
      const control = visibleControl(name);
      if (!control) return;
      control.removeAttribute("aria-invalid");
      const errorEl = errorElementFor(control);
      if (errorEl) errorEl.textContent = "";
    },

    /** Remove every message from the form. */
    clearAll() {
      ui.clearMessage();
      for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
      for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    },

    /**
     * Show every message of `errors` ({field: text}) at its field (form-level when the field is
     * missing) and focus the first bad field. Returns whether there was any.
     */
    showFieldErrors(errors) {
      const entries = Object.entries(errors || {}).filter(([, text]) => text);
      let first = null;
      for (const [field, text] of entries) {
        if (ui.setFieldError(field, text)) first = first || visibleControl(field);
        else ui.setMessage(text, "error");
      }
      if (first) first.focus();
      return entries.length > 0;
    },

    /** Display an api error: inline at its field if possible, else form-level. */
    showError(result) {
      const text = errorText(result);
      const field = result.error && result.error.field;
      if (field && ui.setFieldError(field, text)) {
        visibleControl(field).focus();
        return;
      }
      ui.setMessage(text, "error");
    },
  };
  return ui;
}

/** Wire a form's submit event to an api call. Returns the form's UI controller. */
export function bindForm(form, { validate, submit, onSuccess, onError } = {}) {
  const ui = createFormUI(form);

  // Editing a field clears its error.
  form.addEventListener("input", (event) => {
    const target = event.target;
    if (target && target.name && target.getAttribute("aria-invalid") === "true") ui.clearFieldError(target.name);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (ui.pending) return;
    ui.clearAll();
    hidePasswords(form);
    const values = fieldValues(form);
    // Check every field before sending: the server stops at the first bad one.
    if (validate && ui.showFieldErrors(validate(values))) return;
    ui.setPending(true);
    let keepPending = false;
    try {
      const result = await submit(values);
      if (result.ok) {
        keepPending = (onSuccess ? await onSuccess(result, values, ui) : false) === true;
      } else if (!(onError && onError(result, values, ui))) {
        ui.showError(result);
      }
    } catch (err) {
      console.error(err);
      ui.setMessage("Something went wrong. Please try again.", "error");
    } finally {
      if (!keepPending) ui.setPending(false);
    }
  });

  enhancePasswordToggles(form);
  return ui;
}

/** Re-mask any password field that the user revealed. */
function hidePasswords(root) {
  for (const button of root.querySelectorAll("button[data-toggle-password]")) {
    const input = document.getElementById(button.getAttribute("aria-controls"));
    if (input && input.type === "text") button.click();
  }
}

/**
 * "Show/Hide" buttons for password fields (hidden until this runs):
 * <button type="button" data-toggle-password aria-controls="input-id" hidden>Show</button>
 */
export function enhancePasswordToggles(root) {
  for (const button of root.querySelectorAll("button[data-toggle-password]")) {
    const input = document.getElementById(button.getAttribute("aria-controls"));
    if (!input) continue;
    const render = () => {
      const shown = input.type === "text";
      button.textContent = shown ? "Hide" : "Show";
      button.setAttribute("aria-label", shown ? "Hide password" : "Show password");
    };
    button.addEventListener("click", () => {
      input.type = input.type === "password" ? "text" : "password";
      render();
    });
    render();
    button.hidden = false;
  }
}
