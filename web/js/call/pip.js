/*
 * Picture-in-picture: my own camera as a small tile floating over the stage, moved by dragging
 * (pointer events: mouse, pen and touch alike) or with the arrow keys when it has focus. It
 * always stays whole inside its bounds (the stage: inside the viewport and above the control
 * row). The position is a fraction of the free room (--pip-fx / --pip-fy, 0 = left / top edge,
 * 1 = right / bottom), turned into left / top by CSS (call.css), so it keeps to its corner
 * without any script when the stage is resized or rotated.
 */

const MARGIN = 10; // px, as in call.css
const KEY_STEP = 24;

export class Pip {
  /** `bounds`: the positioned element the PiP floats in. */
  constructor(bounds) {
    this.bounds = bounds;
    this.el = null;
    this.fx = 1; // 0 = left edge, 1 = right edge of the free room
    this.fy = 1; // 0 = top, 1 = bottom
    this.drag = null;
    this.onDown = (event) => this.start(event);
    this.onMove = (event) => this.move(event);
    this.onUp = (event) => this.end(event);
    this.onKey = (event) => this.key(event);
  }

  /** Float `el` (a tile) as the PiP; null puts the current one back into the flow. */
  attach(el) {
    if (el === this.el) return;
    if (this.el) this.detach();
    this.el = el;
    if (!el) return;
    el.classList.add("pip");
    el.tabIndex = 0;
    el.setAttribute("aria-roledescription", "movable self view");
    el.addEventListener("pointerdown", this.onDown);
    el.addEventListener("keydown", this.onKey);
    this.place();
  }

  detach() {
    const el = this.el;
    this.el = null;
    el.classList.remove("pip", "dragging");
    el.removeAttribute("tabindex");
    el.removeAttribute("aria-roledescription");
    for (const prop of ["--pip-fx", "--pip-fy"]) el.style.removeProperty(prop);
    el.removeEventListener("pointerdown", this.onDown);
    el.removeEventListener("keydown", this.onKey);
  }

  /** The free room: how far the PiP's top-left corner may move. */
  room() {
    const w = this.bounds.clientWidth - this.el.offsetWidth - 2 * MARGIN;
    const h = this.bounds.clientHeight - this.el.offsetHeight - 2 * MARGIN;
    return { w: Math.max(0, w), h: Math.max(0, h) };
  }

  /** Apply the stored position. */
  place() {
    if (!this.el) return;
    this.el.style.setProperty("--pip-fx", this.fx.toFixed(4));
    this.el.style.setProperty("--pip-fy", this.fy.toFixed(4));
  }

  moveTo(left, top) {
    const { w, h } = this.room();
    this.fx = w ? Math.min(1, Math.max(0, (left - MARGIN) / w)) : 1;
    this.fy = h ? Math.min(1, Math.max(0, (top - MARGIN) / h)) : 1;
    this.place();
  }

  start(event) {
    if (event.button !== 0 || event.target.closest("button")) return; // the pin button clicks
    event.preventDefault();
    this.el.setPointerCapture(event.pointerId);
    this.el.addEventListener("pointermove", this.onMove);
    this.el.addEventListener("pointerup", this.onUp);
    this.el.addEventListener("pointercancel", this.onUp);
    this.drag = { id: event.pointerId, x: event.clientX, y: event.clientY, left: this.el.offsetLeft, top: this.el.offsetTop };
    this.el.classList.add("dragging");
  }

  move(event) {
    const drag = this.drag;
    if (!drag || event.pointerId !== drag.id) return;
    this.moveTo(drag.left + event.clientX - drag.x, drag.top + event.clientY - drag.y);
  }

  end(event) {
    if (!this.drag || event.pointerId !== this.drag.id) return;
    this.drag = null;
    this.el.classList.remove("dragging");
    this.el.removeEventListener("pointermove", this.onMove);
    this.el.removeEventListener("pointerup", this.onUp);
    this.el.removeEventListener("pointercancel", this.onUp);
  }

  key(event) {
    const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[event.key];
    if (!step || event.target !== this.el) return;
    event.preventDefault();
    this.moveTo(this.el.offsetLeft + step[0] * KEY_STEP, this.el.offsetTop + step[1] * KEY_STEP);
  }
}
