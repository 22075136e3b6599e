/*
 * Theme bootstrap + toggle.
 *
 * Loaded as a classic, render-blocking script in <head> (not type="module",
 * because module scripts are deferred and would apply the theme after the
 * first paint). It sets <html data-theme="light|dark"> immediately from the
 * stored override (localStorage) or the OS preference, then wires up the
 * #theme-toggle button once the DOM is ready. No inline code: CSP friendly.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "meet-theme";
  var root = document.documentElement;
  var media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  /** The user's explicit choice, or null when following the system. */
  function storedTheme() {
    try {
      var value = window.localStorage.getItem(STORAGE_KEY);
      return value === "light" || value === "dark" ? value : null;
    } catch (e) {
      return null; // storage disabled (privacy mode, etc.)
    }
  }

  function systemTheme() {
    return media && media.matches ? "dark" : "light";
  }

  function currentTheme() {
    return root.getAttribute("data-theme") === "dark" ? "dark" : "light";
  }

  /** Reflect the theme on <html> and on the toggle button (if present). */
  function apply(theme) {
    root.setAttribute("data-theme", theme);
    var button = document.getElementById("theme-toggle");
    if (button) {
      button.setAttribute("aria-pressed", theme === "dark" ? "true" : "false");
      button.title = theme === "dark" ? "Switch to light theme" : "Switch to dark theme";
    }
  }

  apply(storedTheme() || systemTheme());

  // Follow OS changes only while the user has not chosen explicitly.
  if (media) {
    var onSystemChange = function () {
      if (!storedTheme()) apply(systemTheme());
    };
    if (media.addEventListener) media.addEventListener("change", onSystemChange);
    else if (media.addListener) media.addListener(onSystemChange);
  }

  // Keep several open tabs in sync.
  window.addEventListener("storage", function (event) {
    if (event.key === STORAGE_KEY) apply(storedTheme() || systemTheme());
  });

  function wireToggle() {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    apply(currentTheme()); // sync aria-pressed/title now that the button exists
    button.addEventListener("click", function () {
      var next = currentTheme() === "dark" ? "light" : "dark";
      try {
        window.localStorage.setItem(STORAGE_KEY, next);
      } catch (e) {
        /* not persisted, still applied for this page */
      }
      apply(next);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", wireToggle);
  } else {
    wireToggle();
  }
})();
