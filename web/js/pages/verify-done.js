/* Landing page after the one-click email link: ?status=ok|invalid[&email=] */
import { keepNextOnLinks, nextFromQuery, queryParam, recallNext, withQuery } from "../urls.js";

const ok = queryParam("status") === "ok";
const email = queryParam("email") || "";

document.getElementById(ok ? "verify-done-ok" : "verify-done-invalid").hidden = false;
document.title = (ok ? "Email verified" : "Link invalid or expired") + " · meet";

// Carry the email address along when the server provided it.
if (email) {
  for (const link of document.querySelectorAll("a[data-with-email]")) {
    const url = new URL(link.getAttribute("href"), window.location.origin);
    link.href = withQuery(url.pathname, { ...Object.fromEntries(url.searchParams), [link.dataset.withEmail]: email });
  }
}

// The mail's link cannot carry `next`; sign-up remembered it in this browser.
keepNextOnLinks(nextFromQuery() || recallNext());
