/*
 * The page's `view`: which other people's video tiles it shows, at what CSS size. In relay rooms
 * the relay forwards only those videos (another page of the grid costs nothing) and gives the
 * largest tiles its bandwidth first. Layouts come in bursts (a window resize, a page turn), so a
 * view is sent at most every DELAY ms, and only when it changed; a new connection (welcome) or
 * a switch to the relay sends the current one again.
 */

const DELAY = 300; // ms

export class ViewSender {
  /** send(tiles) → whether it went out; active() → whether the room uses the relay now. */
  constructor({ send, active }) {
    this.send = send;
    this.active = active;
    this.tiles = [];
    this.sent = ""; // the last view sent, as JSON (nothing sent twice)
    this.timer = 0;
  }

  /** The tiles shown after a layout: sent after DELAY ms, with what follows in the meantime. */
  update(tiles) {
    this.tiles = tiles;
    if (!this.timer) this.timer = setTimeout(() => this.flush(), DELAY);
  }

  /** Send the current view again (a new connection, or the room switched to the relay). */
  resend() {
    this.sent = "";
    this.flush();
  }

  flush() {
    clearTimeout(this.timer);
    this.timer = 0;
    if (!this.active()) return;
    const text = JSON.stringify(this.tiles);
    if (text === this.sent) return;
    if (this.send(this.tiles)) this.sent = text;
  }
}
