/*
 * The control bar's "More" menu (on phones the bar keeps mic, camera, chat, people and leave;
 * every control marked data-overflow moves here). A real menu: the button has
 * aria-haspopup / aria-expanded, items are role=menuitem (menuitemcheckbox for toggles, with
 * aria-checked), arrow keys / Home / End move, Escape or Tab closes and returns focus to the
 * button, a click outside closes. Each item clicks the control it stands for, so the control's
 * own handler, state and shortcuts stay the single source of truth.
 *
 * Hooks: #more-actions (button), #more-menu [role=menu], .more-item[data-for=<control id>]
 */

export class MoreMenu {
  constructor(button, menu, bar) {
    this.button = button;
    this.menu = menu;
    this.bar = bar;
    button.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));
    button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.open(event.key === "ArrowUp" ? -1 : 0);
      }
    });
    menu.addEventListener("keydown", (event) => this.onKey(event));
    menu.addEventListener("click", (event) => {
      const item = event.target.closest(".more-item");
      if (item && item.getAttribute("aria-disabled") !== "true") this.choose(item);
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.isOpen() && !menu.contains(event.target) && !button.contains(event.target)) this.close(false);
    });
  }

  isOpen() {
    return !this.menu.hidden;
  }

  /** The controls that live in the menu when the bar has no room for them. */
  sources() {
    return [...this.bar.querySelectorAll(".ctl[data-overflow]")];
  }

  items() {
    return [...this.menu.querySelectorAll(".more-item")];
  }

  /** (Re)build the items from the controls' current label, icon and state. */
  render() {
    const items = this.sources().map((source) => {
      const item = document.createElement("button");
      item.type = "button";
      item.className = "more-item";
      item.tabIndex = -1;
      item.dataset.for = source.id;
      const pressed = source.getAttribute("aria-pressed");
      item.setAttribute("role", pressed === null ? "menuitem" : "menuitemcheckbox");
      if (pressed !== null) item.setAttribute("aria-checked", pressed);
      if (source.disabled) item.setAttribute("aria-disabled", "true");
      const svg = source.querySelector("svg.icon");
      if (svg) item.append(svg.cloneNode(true));
      const label = document.createElement("span");
      label.textContent = (source.querySelector(".ctl-label") || source).textContent.trim();
      item.append(label);
      if (source.title) item.title = source.title;
      return item;
    });
    this.menu.replaceChildren(...items);
  }

  /** Keep an open menu in step with the controls (called after every state change). */
  refresh() {
    if (!this.isOpen()) return;
    const focused = document.activeElement && document.activeElement.dataset.for;
    this.render();
    const again = this.items().find((item) => item.dataset.for === focused);
    if (again) again.focus();
  }

  open(index = 0) {
    this.render();
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    const items = this.items();
    if (items.length) items.at(index).focus();
  }

  close(refocus = true) {
    if (!this.isOpen()) return;
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus) this.button.focus();
  }

  choose(item) {
    const source = document.getElementById(item.dataset.for);
    this.close();
    if (source && !source.disabled) source.click();
  }

  onKey(event) {
    const items = this.items();
    const index = items.indexOf(document.activeElement);
    const last = items.length - 1;
    const moves = { ArrowDown: index >= last ? 0 : index + 1, ArrowUp: index <= 0 ? last : index - 1, Home: 0, End: last };
    if (event.key in moves) {
      event.preventDefault();
      event.stopPropagation(); // not the toolbar's arrow keys
      items[moves[event.key]].focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // Escape closes the menu, not the side panel too
      this.close();
    } else if (event.key === "Tab") {
      this.close(false);
    }
  }
}
