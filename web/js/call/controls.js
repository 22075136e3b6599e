/*
 * The call's control bar. Toggles keep a constant visible label (their accessible name) and
 * report their state with aria-pressed (true = on / active); the tooltip says what a click
 * does. Keyboard shortcuts as in other meeting apps: Ctrl/⌘+D microphone, Ctrl/⌘+E camera;
 * arrow keys move along the bar.
 *
 * On phones the bar is one row (mic, camera, chat, people with its count, more, leave); the
 * controls marked data-overflow go into the "More" menu (menu.js). Notices dock beside the bar
 * (toast.js dockToasts).
 *
 * Hooks: #toggle-mic, #toggle-camera, #toggle-screen, #toggle-speaker-view, #toggle-hand, #toggle-chat,
 *        #toggle-participants, #copy-link, #leave, #more-actions, #more-menu
 */

import { MoreMenu } from "./menu.js";
import { dockToasts } from "./toast.js";

/** Tooltips: [when off, when on]. */
const HINTS = {
  "toggle-mic": ["Turn on microphone (Ctrl+D)", "Turn off microphone (Ctrl+D)"],
  "toggle-camera": ["Turn on camera (Ctrl+E)", "Turn off camera (Ctrl+E)"],
  "toggle-screen": ["Share your screen", "Stop sharing your screen"],
  "toggle-speaker-view": ["Show whoever speaks large", "Show everyone the same size"],
  "toggle-hand": ["Raise your hand", "Lower your hand"],
  "toggle-chat": ["Open the chat", "Close the chat"],
  "toggle-participants": ["Show everyone in the meeting", "Hide the people panel"],
};

export class Controls {
  /** handlers: {mic, camera, screen, speakerView, hand, chat, participants, leave} → called on click */
  constructor(handlers) {
    this.buttons = {};
    const map = {
      "toggle-mic": "mic",
      "toggle-camera": "camera",
      "toggle-screen": "screen",
      "toggle-speaker-view": "speakerView",
      "toggle-hand": "hand",
      "toggle-chat": "chat",
      "toggle-participants": "participants",
      leave: "leave",
    };
    for (const [id, name] of Object.entries(map)) {
      const button = document.getElementById(id);
      this.buttons[id] = button;
      button.addEventListener("click", () => handlers[name]());
    }
    this.unread = document.getElementById("chat-unread");
    this.peopleBadge = document.getElementById("people-badge");

    document.addEventListener("keydown", (event) => {
      if (!(event.ctrlKey || event.metaKey) || event.altKey || event.shiftKey) return;
      const key = event.key.toLowerCase();
      if (key === "d") {
        event.preventDefault();
        handlers.mic();
      } else if (key === "e") {
        event.preventDefault();
        handlers.camera();
      }
    });

    // The bar is a toolbar: Left / Right (and Home / End) move between its visible buttons.
    const bar = document.querySelector(".controls");
    bar.addEventListener("keydown", (event) => {
      const keys = ["ArrowLeft", "ArrowRight", "Home", "End"];
      if (!keys.includes(event.key) || event.target.closest("[role=menu]")) return;
      const buttons = [...bar.querySelectorAll(".ctl:not(:disabled)")].filter((b) => b.getClientRects().length > 0);
      const index = buttons.indexOf(document.activeElement);
      if (index === -1) return;
      event.preventDefault();
      const last = buttons.length - 1;
      const next = {
        ArrowLeft: index === 0 ? last : index - 1,
        ArrowRight: index === last ? 0 : index + 1,
        Home: 0,
        End: last,
      }[event.key];
      buttons[next].focus();
    });

    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
      const screen = this.buttons["toggle-screen"];
      screen.disabled = true;
      screen.title = "Screen sharing is not available in this browser";
    }

    const more = document.getElementById("more-actions");
    const menu = document.getElementById("more-menu");
    this.menu = more && menu ? new MoreMenu(more, menu, bar) : null;
    dockToasts(bar, bar.querySelector(".controls-main"));
  }

  /** state: {mic, camera, screen, speakerView, hand, chat, participants} booleans */
  render(state) {
    const on = {
      "toggle-mic": state.mic,
      "toggle-camera": state.camera,
      "toggle-screen": state.screen,
      "toggle-speaker-view": state.speakerView,
      "toggle-hand": state.hand,
      "toggle-chat": state.chat,
      "toggle-participants": state.participants,
    };
    for (const [id, value] of Object.entries(on)) {
      const button = this.buttons[id];
      button.setAttribute("aria-pressed", String(Boolean(value)));
      if (!button.disabled) button.title = HINTS[id][value ? 1 : 0];
    }
    if (this.menu) this.menu.refresh();
  }

  /** Unread chat messages badge (0 hides it). */
  setUnread(count) {
    this.unread.hidden = count === 0;
    this.unread.textContent = count > 9 ? "9+" : String(count);
  }

  /** Number of people in the call, on the People button. */
  setPeople(count) {
    this.peopleBadge.textContent = String(count);
  }
}
