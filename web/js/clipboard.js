/*
 * Copy text to the clipboard: the async Clipboard API where allowed, else a hidden
 * textarea + execCommand("copy") (older browsers, http:// pages, denied permission).
 * Resolves to true when the text was copied.
 */

export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      /* permission denied or not focused: try the fallback */
    }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  const focused = document.activeElement;
  document.body.append(area);
  area.select();
  area.setSelectionRange(0, text.length);
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  if (focused && typeof focused.focus === "function") focused.focus();
  return ok;
}

/**
 * Copy on click and confirm on the button: its label (the `.btn-label` child if any, else the
 * button text) reads "Copied" for two seconds. `onFail(text)` runs when copying is impossible.
 */
export function bindCopyButton(button, getText, onFail) {
  const labelEl = button.querySelector(".btn-label") || button;
  let timer = 0;
  let original = null;
  button.addEventListener("click", async () => {
    const text = getText();
    const ok = await copyText(text);
    if (!ok) {
      if (onFail) onFail(text);
      return;
    }
    if (original === null) original = labelEl.textContent;
    labelEl.textContent = "Copied";
    button.classList.add("copied");
    clearTimeout(timer);
    timer = setTimeout(() => {
      labelEl.textContent = original;
      original = null;
      button.classList.remove("copied");
    }, 2000);
  });
}
