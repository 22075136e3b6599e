/*
 * Emoji reactions: a React control opens a row of the eight emoji above the control bar (it
 * stays open for several; Escape, a click outside or the control close it). Each `reaction`
 * (mine too: the server echoes it) bursts on the sender's tile for a few seconds and is
 * announced politely to screen readers. Hidden while the room's `reactions` is off.
 *
 * Hooks: #toggle-reactions, #reaction-picker .reaction-choice, .tile .reaction-burst,
 *        #reaction-news
 */

import { REACTIONS } from "../protocol.js";

const NAMES = {
  "👍": "Thumbs up",
  "👏": "Applause",
  "❤️": "Heart",
  "😂": "Laughing",
  "😮": "Surprised",
  "🎉": "Celebrate",
  "🙏": "Thank you",
  "🤔": "Thinking",
};
const BURST_MS = 3000;

export class Reactions {
  /**
   * send(emoji) → bool; tileOf(peerId) → the tile element showing that person (or null);
   * nameOf(peerId) → their name for the announcement.
   */
  constructor({ send, tileOf, nameOf }) {
    this.send = send;
    this.tileOf = tileOf;
    this.nameOf = nameOf;
    this.button = document.getElementById("toggle-reactions");
    this.picker = document.getElementById("reaction-picker");
    this.news = document.getElementById("reaction-news");
    this.enabled = true;
    this.picker.replaceChildren(...REACTIONS.map((emoji) => this.choice(emoji)));
    this.button.addEventListener("click", () => (this.picker.hidden ? this.open() : this.close()));
    this.picker.addEventListener("click", (event) => {
      const choice = event.target.closest(".reaction-choice");
      if (choice) this.send(choice.dataset.emoji);
    });
    this.picker.addEventListener("keydown", (event) => this.onKey(event));
    document.addEventListener("pointerdown", (event) => {
      if (!this.picker.hidden && !this.picker.contains(event.target) && !event.target.closest("#toggle-reactions, #more-menu")) {
        this.close(false);
      }
    });
  }

  /** The room's `reactions` setting: off hides the control (and its More menu entry). */
  setEnabled(on) {
    this.enabled = Boolean(on);
    this.button.hidden = !this.enabled;
    // The More menu lists every .ctl[data-overflow]; a hidden control must not be among them.
    if (this.enabled) this.button.setAttribute("data-overflow", "");
    else this.button.removeAttribute("data-overflow");
    if (!this.enabled) this.close(false);
  }

  /** A `reaction` message: burst on the sender's tile. */
  show({ peer_id: peerId, emoji }) {
    const tile = this.tileOf(peerId) || document.getElementById("stage");
    if (!tile) return;
    const burst = document.createElement("span");
    burst.className = "reaction-burst";
    burst.textContent = emoji;
    burst.setAttribute("aria-hidden", "true");
    burst.style.setProperty("--burst-x", `${Math.round(Math.random() * 40 - 20)}%`);
    tile.append(burst);
    setTimeout(() => burst.remove(), BURST_MS);
    this.news.textContent = `${this.nameOf(peerId)} reacted ${NAMES[emoji] || emoji}`;
  }

  // ---- internals ---------------------------------------------------------------------

  choice(emoji) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "reaction-choice";
    button.dataset.emoji = emoji;
    button.textContent = emoji;
    button.title = NAMES[emoji];
    button.setAttribute("aria-label", NAMES[emoji]);
    return button;
  }

  open() {
    if (!this.enabled) return;
    this.picker.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.picker.querySelector(".reaction-choice").focus();
  }

  close(refocus = true) {
    if (this.picker.hidden) return;
    this.picker.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus && this.button.getClientRects().length) this.button.focus();
  }

  onKey(event) {
    const choices = [...this.picker.querySelectorAll(".reaction-choice")];
    const index = choices.indexOf(document.activeElement);
    const last = choices.length - 1;
    const moves = { ArrowRight: index >= last ? 0 : index + 1, ArrowLeft: index <= 0 ? last : index - 1, Home: 0, End: last };
    if (event.key in moves) {
      event.preventDefault();
      event.stopPropagation();
      choices[moves[event.key]].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // not the side panel's Escape too
      this.close();
    }
  }
}
