/*
 * The chat panel: history from "welcome", live messages, sending (Enter sends, Shift+Enter
 * adds a line), "load older" (GET …/messages?before=) and search (GET …/messages?q=).
 *
 * Hooks: #chat-panel, #chat-input, #chat-send, .chat-message > .chat-text,
 *        #chat-search, .search-result
 */

import { roomMessages } from "../api.js";
import { errorText } from "../forms.js";

const MAX_CHARS = 2000;
const PAGE = 50;
const GROUP_WINDOW_S = 300; // consecutive messages of one person within 5 min share a header
const URL_RE = /(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])/g;

// The browser's own locale decides the clock: "14:05" in en-GB, "2:05 PM" in en-US. "numeric"
// hours (not "2-digit") so 12-hour locales do not get a stray leading zero.
const TIME_FORMAT = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const DATE_TIME_FORMAT = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "numeric", minute: "2-digit",
});

function formatDateTime(seconds) {
  const date = new Date(seconds * 1000);
  const sameDay = date.toDateString() === new Date().toDateString();
  return (sameDay ? TIME_FORMAT : DATE_TIME_FORMAT).format(date);
}

/** Text with http(s) links made clickable (built from text nodes: no HTML injection). */
function linkified(text) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    if (match.index > last) out.push(document.createTextNode(text.slice(last, match.index)));
    const a = document.createElement("a");
    a.href = match[0];
    a.textContent = match[0];
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    out.push(a);
    last = match.index + match[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

/** Text with the searched words wrapped in <mark>. */
function highlighted(text, query) {
  const words = query
    .split(/\s+/)
    .filter(Boolean)
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  if (!words.length) return [document.createTextNode(text)];
  // Words match at their start, as the server's search does (the last one as a prefix).
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(${words.join("|")})`, "giu");
  return text.split(re).map((part, i) => {
    if (i % 2 === 0) return document.createTextNode(part);
    const mark = document.createElement("mark");
    mark.textContent = part;
    return mark;
  });
}

export class ChatPanel {
  /**
   * @param {object} o
   * @param {string} o.code      room code
   * @param {object} o.me        the signed-in user {id, username}
   * @param {(text: string) => boolean} o.send  sends over the socket; false when offline
   * @param {(message: object) => void} o.onIncoming  a message from someone else arrived
   */
  constructor({ code, me, send, onIncoming }) {
    this.code = code;
    this.me = me;
    this.sendText = send;
    this.onIncoming = onIncoming;
    this.ids = new Set();
    this.oldestId = null;
    this.searchSeq = 0;
    this.searchNext = null;

    const $ = (id) => document.getElementById(id);
    this.panel = $("chat-panel");
    this.scroller = $("chat-scroll");
    this.list = $("chat-list");
    this.empty = $("chat-empty");
    this.olderButton = $("chat-older");
    this.form = $("chat-form");
    this.input = $("chat-input");
    this.sendButton = $("chat-send");
    this.counter = $("chat-counter");
    this.error = $("chat-error");
    this.searchForm = $("chat-search-form");
    this.searchInput = $("chat-search");
    this.searchClear = $("chat-search-clear");
    this.results = $("chat-search-results");
    this.resultsList = $("chat-search-list");
    this.resultsSummary = $("chat-search-summary");
    this.resultsMore = $("chat-search-more");
    this.bind();
    this.updateComposer();
  }

  bind() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => this.updateComposer());
    this.olderButton.addEventListener("click", () => this.loadOlder());

    let debounce = 0;
    this.searchInput.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => this.search(), 350);
    });
    this.searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(debounce);
      this.search();
    });
    this.searchInput.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.searchInput.value) {
        event.stopPropagation();
        this.clearSearch();
      }
    });
    this.searchClear.addEventListener("click", () => {
      this.clearSearch();
      this.searchInput.focus();
    });
    this.resultsMore.addEventListener("click", () => this.search(true));
  }

  /** Messages replayed by "welcome" (oldest first); merged, so reconnects add no duplicates. */
  setHistory(messages) {
    const fresh = messages.filter((m) => !this.ids.has(m.id));
    if (!fresh.length) return;
    const nearBottom = this.nearBottom();
    if (this.oldestId === null && messages.length >= PAGE) this.olderButton.hidden = false;
    for (const m of fresh) this.insert(m);
    if (nearBottom) this.scrollToBottom();
  }

  /** A live message from the socket. */
  add(message) {
    if (this.ids.has(message.id)) return;
    const stick = this.nearBottom() || message.user.id === this.me.id;
    this.insert(message);
    if (stick) this.scrollToBottom();
    if (message.user.id !== this.me.id) this.onIncoming(message);
  }

  /** Focus the composer (when the panel opens). */
  focus() {
    this.input.focus();
    this.scrollToBottom();
  }

  // ---- rendering ---------------------------------------------------------------------

  renderMessage(m) {
    const li = document.createElement("li");
    li.className = "chat-message";
    li.dataset.id = String(m.id);
    li.dataset.userId = String(m.user.id);
    li.dataset.time = String(m.created_at);
    if (m.user.id === this.me.id) li.classList.add("mine");
    const meta = document.createElement("p");
    meta.className = "chat-meta";
    const author = document.createElement("span");
    author.className = "chat-author";
    author.textContent = m.user.id === this.me.id ? "You" : m.user.username;
    const time = document.createElement("time");
    time.className = "chat-time";
    time.dateTime = new Date(m.created_at * 1000).toISOString();
    time.textContent = formatDateTime(m.created_at);
    meta.append(author, time);
    const text = document.createElement("p");
    text.className = "chat-text";
    text.append(...linkified(m.text));
    li.append(meta, text);
    return li;
  }

  /** Insert in id order (live messages append; older pages prepend). */
  insert(m) {
    this.ids.add(m.id);
    if (this.oldestId === null || m.id < this.oldestId) this.oldestId = m.id;
    const li = this.renderMessage(m);
    let after = null;
    for (const node of this.list.children) {
      if (Number(node.dataset.id) > m.id) {
        after = node;
        break;
      }
    }
    this.list.insertBefore(li, after);
    this.regroup(li);
    if (li.nextElementSibling) this.regroup(li.nextElementSibling);
    this.empty.hidden = true;
  }

  /** Hide the header of a message that follows the same person's within a few minutes. */
  regroup(li) {
    const prev = li.previousElementSibling;
    const continued =
      prev !== null &&
      prev.dataset.userId === li.dataset.userId &&
      Number(li.dataset.time) - Number(prev.dataset.time) < GROUP_WINDOW_S;
    li.classList.toggle("continued", continued);
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  // ---- sending -----------------------------------------------------------------------

  updateComposer() {
    const length = this.input.value.length;
    const text = this.input.value.trim();
    this.sendButton.disabled = !text || length > MAX_CHARS;
    this.counter.hidden = length < MAX_CHARS - 200;
    this.counter.textContent = `${length} / ${MAX_CHARS}`;
    this.counter.classList.toggle("over", length > MAX_CHARS);
    // Grow with the text up to a few lines (CSSOM style: allowed by the CSP).
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 140)}px`;
  }

  submit() {
    const text = this.input.value.trim();
    this.error.textContent = "";
    if (!text) return;
    if (text.length > MAX_CHARS) {
      this.error.textContent = `Messages are limited to ${MAX_CHARS} characters.`;
      return;
    }
    if (!this.sendText(text)) {
      this.error.textContent = "You are offline, so the message was not sent. It will be here to send once you reconnect.";
      return;
    }
    this.input.value = "";
    this.updateComposer();
    this.input.focus();
  }

  /** A chat error from the server (e.g. rate limited). */
  showError(message) {
    this.error.textContent = message;
  }

  // ---- older messages ----------------------------------------------------------------

  async loadOlder() {
    if (this.oldestId === null) return;
    this.olderButton.disabled = true;
    this.olderButton.setAttribute("aria-busy", "true");
    const result = await roomMessages(this.code, { before: this.oldestId, limit: PAGE });
    this.olderButton.disabled = false;
    this.olderButton.setAttribute("aria-busy", "false");
    if (!result.ok) {
      this.error.textContent = errorText(result);
      return;
    }
    const { messages, next_before: nextBefore } = result.data;
    const previousHeight = this.scroller.scrollHeight;
    for (const m of messages) if (!this.ids.has(m.id)) this.insert(m);
    this.scroller.scrollTop += this.scroller.scrollHeight - previousHeight; // keep the view still
    if (nextBefore === null || !messages.length) {
      this.olderButton.hidden = true;
      const start = document.createElement("li");
      start.className = "chat-start";
      start.textContent = "This is the beginning of the chat.";
      this.list.prepend(start);
    }
  }

  // ---- search ------------------------------------------------------------------------

  async search(more = false) {
    const q = this.searchInput.value.trim();
    this.searchClear.hidden = !this.searchInput.value;
    if (!q) {
      this.clearSearch();
      return;
    }
    const seq = ++this.searchSeq;
    if (!more) this.searchNext = null;
    this.results.hidden = false;
    this.results.setAttribute("aria-busy", "true");
    if (!more) this.resultsSummary.textContent = "Searching…";
    const result = await roomMessages(this.code, { q, limit: PAGE, before: more ? this.searchNext : undefined });
    if (seq !== this.searchSeq) return; // a newer search superseded this one
    this.results.setAttribute("aria-busy", "false");
    if (!result.ok) {
      this.resultsSummary.textContent = errorText(result);
      this.resultsMore.hidden = true;
      return;
    }
    const { messages, next_before: nextBefore } = result.data;
    if (!more) this.resultsList.replaceChildren();
    for (const m of messages) this.resultsList.append(this.renderResult(m, q));
    this.searchNext = nextBefore;
    this.resultsMore.hidden = nextBefore === null;
    const count = this.resultsList.children.length;
    this.resultsSummary.textContent =
      count === 0
        ? `No messages match “${q}”.`
        : `${count}${nextBefore === null ? "" : "+"} ${count === 1 ? "message matches" : "messages match"} “${q}”`;
  }

  renderResult(m, q) {
    const li = document.createElement("li");
    li.className = "search-result";
    li.dataset.id = String(m.id);
    const meta = document.createElement("p");
    meta.className = "chat-meta";
    const author = document.createElement("span");
    author.className = "chat-author";
    author.textContent = m.user.id === this.me.id ? "You" : m.user.username;
    const time = document.createElement("time");
    time.className = "chat-time";
    time.dateTime = new Date(m.created_at * 1000).toISOString();
    time.textContent = formatDateTime(m.created_at);
    meta.append(author, time);
    const text = document.createElement("p");
    text.className = "search-text";
    text.append(...highlighted(m.text, q));
    li.append(meta, text);
    return li;
  }

  clearSearch() {
    this.searchSeq += 1;
    this.searchInput.value = "";
    this.searchClear.hidden = true;
    this.results.hidden = true;
    this.resultsList.replaceChildren();
    this.resultsSummary.textContent = "";
  }
}
