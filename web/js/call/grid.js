/*
 * The video stage: one tile per camera and one per screen share.
 *
 * Layouts (stage[data-layout]):
 *   grid       every camera in #tiles, sized by a ResizeObserver for the largest tiles; my own
 *              camera floats as a small draggable picture-in-picture (pip.js) as soon as
 *              someone else is here on a phone, or when one other person is (they get the stage)
 *   spotlight  a pinned tile, else the screens, else (speaker view, stage[data-view=speaker]) the
 *              speaker's camera, large in #screens ("main"), every other tile in a strip (#tiles)
 *              that shows only whole tiles and scrolls tile by tile. The speaker: the room's
 *              dominant speaker (relay rooms), else whoever was last heard here (mesh), else the
 *              first other person
 *   A grid holds at most PAGE_SIZE tiles (PHONE_PAGE_SIZE on a phone); more people make pages,
 *   turned with the pager under the grid ("2 / 6", #pager). My camera is on the first page.
 * A camera is cropped to its tile only when their shapes nearly match (layout.js mayCover),
 * otherwise letterboxed: a single person's tile takes their camera's own shape.
 * My own screen is never shown back to me (a hall of mirrors): its tile is a "You are
 * presenting" card with a Stop presenting button.
 * Pinning is mine only: a pin button on each tile; a pinned tile that goes away unpins.
 * After each layout, onView(tiles) gets the other people's tiles shown, with their CSS sizes
 * ([{peer_id, source, width, height}]): the page's `view` (relay rooms forward only those). A
 * tile of the strip scrolled out of sight is not shown (an IntersectionObserver on the strip).
 *
 * Tile markup (hooks used by tests):
 *   .tile[data-peer-id]  remote camera        .tile.local            my camera (mirrored)
 *   .tile.screen[data-peer-id]  remote screen .tile.screen.local     my presenting card
 *   .tile.pip (my floating camera), .tile.pinned, .tile-pin (pin button), .presenting-card
 *   .tile-net[data-level] (network quality, netquality.js)
 *   classes: muted (mic off), camera-off, hand, speaking (heard here now), dominant (the room's
 *   dominant speaker, judged by the relay), no-picture (no frame of its current video track
 *   yet, or no video track: the avatar shows)
 */

import { avatarHue, initialOf } from "./avatar.js";
import { icon } from "./icons.js";
import { bestOfRatios, GAP, mayCover, stripFit } from "./layout.js";
import { Pip } from "./pip.js";

const NARROW = "(max-width: 720px)";
const PAGE_SIZE = 9; // tiles per grid page: a 3×3 grid (the relay's video slots, [rtc] video_slots)
const PHONE_PAGE_SIZE = 4; // phones show at most four video tiles

function button(className, content, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.append(...content);
  b.addEventListener("click", onClick);
  return b;
}

class Tile {
  constructor({ key, peerId, local, screen, name, user, onPin, onStopPresenting }) {
    this.key = key;
    this.card = Boolean(local && screen); // my own screen: a card, not the picture
    this.el = document.createElement("div");
    this.el.className = "tile";
    this.el.classList.toggle("local", Boolean(local));
    this.el.classList.toggle("screen", Boolean(screen));
    if (peerId) this.el.dataset.peerId = peerId;
    this.el.setAttribute("role", "group");

    this.video = document.createElement("video");
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.muted = Boolean(local) || Boolean(screen); // my own sound never plays back
    this.video.setAttribute("playsinline", "");

    this.avatar = document.createElement("div");
    this.avatar.className = "tile-avatar";
    this.avatar.setAttribute("aria-hidden", "true");
    this.avatarLetter = document.createElement("span");
    this.avatar.append(this.avatarLetter);

    const hand = document.createElement("span");
    hand.className = "tile-hand";
    hand.title = "Hand raised";
    hand.append(icon("hand"), Object.assign(document.createElement("span"), { className: "tile-hand-text", textContent: "Hand" }));

    const bar = document.createElement("div");
    bar.className = "tile-bar";
    const mic = document.createElement("span");
    mic.className = "tile-mic";
    mic.title = "Microphone off";
    mic.setAttribute("role", "img");
    mic.setAttribute("aria-label", "Microphone off");
    mic.append(icon("mic-off"));
    if (screen) bar.append(icon("screen", "tile-screen-icon"));
    this.nameEl = document.createElement("span");
    this.nameEl.className = "tile-name";
    bar.append(mic, this.nameEl);

    this.status = document.createElement("p");
    this.status.className = "tile-status";
    this.status.hidden = true;

    // The network-quality indicator's place (netquality.js fills it; hidden until measured).
    this.net = document.createElement("div");
    this.net.className = "tile-net";
    this.net.hidden = true;

    this.pin = button("tile-pin", [icon("pin")], () => onPin(this.key));
    this.pin.setAttribute("aria-pressed", "false");

    if (this.card) {
      this.el.append(this.presentingCard(onStopPresenting), bar);
    } else {
      this.el.append(this.video, this.avatar, hand, bar, this.status, this.pin, this.net);
    }
    this.user = user || null;
    this.setName(name);
    this.pictureTrack = null; // the video track the tile shows (watchPicture)
    this.pictureToken = 0;
    this.onPicture = () => {}; // a picture appeared or went (the grid lays out again)
    this.el.classList.add("no-picture");
  }

  presentingCard(onStop) {
    const card = document.createElement("div");
    card.className = "presenting-card";
    const title = document.createElement("p");
    title.className = "presenting-title";
    title.textContent = "You are presenting";
    const text = document.createElement("p");
    text.className = "presenting-text";
    text.textContent = "Everyone in the meeting sees your screen.";
    const stop = button("btn btn-danger btn-sm presenting-stop", [icon("close"), "Stop presenting"], () => onStop());
    card.append(icon("screen", "presenting-icon"), title, text, stop);
    return card;
  }

  setName(name) {
    this.name = name;
    this.nameEl.textContent = name;
    this.avatarLetter.textContent = initialOf(this.user ? this.user.username : name);
    const hue = avatarHue(this.user || { username: name });
    this.avatar.style.setProperty("--avatar-hue", String(hue)); // CSSOM: allowed by the CSP
    this.el.setAttribute("aria-label", name);
    this.setPinned(this.el.classList.contains("pinned"));
  }

  setPinned(on) {
    this.el.classList.toggle("pinned", on);
    this.pin.setAttribute("aria-pressed", String(on));
    const label = on ? `Unpin ${this.name}` : `Pin ${this.name}`;
    this.pin.setAttribute("aria-label", label);
    this.pin.title = on ? "Unpin" : "Pin (only for you)";
  }

  /**
   * Show a MediaStream (null clears), or the same one again after its tracks changed (relay
   * slots). Autoplay refusals are reported to onBlocked.
   */
  setStream(stream, onBlocked) {
    if (this.card) return; // never play my own screen back to me
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    this.watchPicture(stream ? stream.getVideoTracks()[0] || null : null);
    if (!stream) return;
    const played = this.video.play();
    if (played && played.catch) {
      played.catch((err) => {
        if (err && err.name === "NotAllowedError" && !this.video.muted && onBlocked) onBlocked(this);
      });
    }
  }

  /**
   * A new video track (or none): the tile shows no picture (its avatar) until that track's
   * first frame received from now on is presented. With relay slots one track carries one
   * person, then another: the last frame of the previous one must not stand for the new one.
   */
  watchPicture(track) {
    if (track === this.pictureTrack) return;
    this.pictureTrack = track;
    const token = ++this.pictureToken;
    this.setPicture(false);
    if (!track) return;
    if (typeof this.video.requestVideoFrameCallback !== "function") {
      this.setPicture(true); // no way to tell frames apart: show whatever plays
      return;
    }
    const since = performance.now();
    const presented = (_now, frame) => {
      if (token !== this.pictureToken) return;
      if (frame && typeof frame.receiveTime === "number" && frame.receiveTime < since) {
        this.video.requestVideoFrameCallback(presented); // received before the change
        return;
      }
      this.setPicture(true);
    };
    this.video.requestVideoFrameCallback(presented);
  }

  /** Whether the video shows a picture of this tile's person (else the avatar, or black). */
  setPicture(on) {
    if (this.el.classList.contains("no-picture") !== on) return;
    this.el.classList.toggle("no-picture", !on);
    this.onPicture();
  }

  /** The shape (w/h) of the picture, once known. */
  aspect() {
    const { videoWidth: w, videoHeight: h } = this.video;
    const shown = !this.el.classList.contains("camera-off") && !this.el.classList.contains("no-picture");
    return w && h && shown ? w / h : null;
  }

  /** Media state of the participant: {audio, video, hand} (missing keys unchanged). */
  setState({ audio, video, hand }) {
    if (typeof audio === "boolean") this.el.classList.toggle("muted", !audio);
    if (typeof video === "boolean") this.el.classList.toggle("camera-off", !video);
    if (typeof hand === "boolean") this.el.classList.toggle("hand", hand);
  }

  setSpeaking(on) {
    this.el.classList.toggle("speaking", on);
  }

  /** Whether this is the room's dominant speaker (relay rooms: the server's `speaker`). */
  setDominant(on) {
    this.el.classList.toggle("dominant", on);
  }

  /** A small notice over the video ("Connecting…"), or null to hide it. */
  setStatus(text) {
    this.status.textContent = text || "";
    this.status.hidden = !text;
  }

  /** Size the tile and decide whether its picture may be cropped to it. */
  size(w, h) {
    this.el.style.setProperty("--tile-w", `${w}px`);
    this.el.style.setProperty("--tile-h", `${h}px`);
    this.el.classList.toggle("contain", !this.el.classList.contains("screen") && !mayCover(this.aspect(), w / h));
  }
}

/** The shape most of these cameras send (so that most of them fill their tiles), else 16:9. */
function cameraShape(tiles) {
  const counts = new Map();
  for (const tile of tiles) {
    const aspect = tile.el.classList.contains("screen") ? null : tile.aspect();
    if (aspect) counts.set(aspect.toFixed(2), (counts.get(aspect.toFixed(2)) || 0) + 1);
  }
  const [top] = [...counts.entries()].sort((x, y) => y[1] - x[1]);
  return top ? Number(top[0]) : 16 / 9;
}

export class Grid {
  /** `stage` holds two containers: `screens` (the main area) and `tiles` (grid or strip). */
  constructor({ stage, screens, tiles, onStopPresenting = () => {}, onView = () => {} }) {
    this.stage = stage;
    this.screens = screens;
    this.tilesEl = tiles;
    this.tiles = new Map(); // key → Tile
    this.pinned = null;
    this.view = "grid"; // "grid" | "speaker" (setView)
    this.page = 0; // the grid page shown (0-based)
    this.pages = 1;
    this.pager = stage.querySelector("#pager");
    if (this.pager) {
      this.pager.querySelector("#page-prev").addEventListener("click", () => this.turn(-1));
      this.pager.querySelector("#page-next").addEventListener("click", () => this.turn(1));
    }
    this.speaker = null; // the speaker's camera key, for the speaker view (setSpeaker)
    this.onStopPresenting = onStopPresenting;
    this.onView = onView;
    this.lastShown = [];
    this.outOfSight = new Set(); // strip tiles scrolled away (IntersectionObserver on #tiles)
    this.sight = new IntersectionObserver((entries) => this.seen(entries), { root: tiles });
    this.pip = new Pip(stage);
    this.narrow = window.matchMedia(NARROW);
    this.frame = 0;
    this.observer = new ResizeObserver(() => this.layout());
    this.observer.observe(stage);
    this.narrow.addEventListener("change", () => this.layout());
  }

  /** Get or create a tile. Keys: "local", "local-screen", "cam:<peer>", "screen:<peer>". */
  ensure(key, options) {
    let tile = this.tiles.get(key);
    if (!tile) {
      tile = new Tile({
        ...options,
        key,
        onPin: (k) => this.togglePin(k),
        onStopPresenting: () => this.onStopPresenting(),
      });
      // A picture's shape is known (or changes) only once frames arrive: lay out again then.
      tile.video.addEventListener("resize", () => this.schedule());
      tile.onPicture = () => this.schedule();
      tile.el.dataset.key = key;
      this.sight.observe(tile.el);
      this.tiles.set(key, tile);
      this.layout();
    }
    return tile;
  }

  get(key) {
    return this.tiles.get(key) || null;
  }

  remove(key) {
    const tile = this.tiles.get(key);
    if (!tile) return;
    if (tile.el === this.pip.el) this.pip.attach(null);
    this.sight.unobserve(tile.el);
    this.outOfSight.delete(key);
    tile.video.srcObject = null;
    tile.el.remove();
    this.tiles.delete(key);
    if (this.pinned === key) this.pinned = null; // pinning someone who leaves unpins
    this.layout();
  }

  /** Keys of the tiles currently shown. */
  keys() {
    return [...this.tiles.keys()];
  }

  /** Pin `key` large for me (or unpin it if it is the pinned one). */
  togglePin(key) {
    this.pinned = this.pinned === key || !this.tiles.has(key) ? null : key;
    this.layout();
  }

  /** "grid" (everyone the same size) or "speaker" (the speaker large, the others in a strip). */
  setView(view) {
    this.view = view === "speaker" ? "speaker" : "grid";
    this.stage.dataset.view = this.view;
    this.layout();
  }

  /** Whose camera the speaker view shows large ("cam:<peer>"), or null (the first other person). */
  setSpeaker(key) {
    if (key === this.speaker) return;
    this.speaker = key;
    if (this.view === "speaker") this.layout();
  }

  /** Show the previous (-1) or next (+1) grid page. */
  turn(step) {
    this.page = Math.min(Math.max(this.page + step, 0), this.pages - 1);
    this.layout();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.layout();
    });
  }

  /** Which tiles go where: {main, rest, pip} (keys). */
  plan() {
    const keys = [...this.tiles.keys()];
    const screens = keys.filter((k) => k === "local-screen" || k.startsWith("screen:"));
    const cams = keys.filter((k) => !screens.includes(k));
    cams.sort((a, b) => Number(b === "local") - Number(a === "local")); // mine first
    if (this.pinned) return { main: [this.pinned], rest: [...screens, ...cams].filter((k) => k !== this.pinned), pip: null };
    if (screens.length) return { main: screens, rest: cams, pip: null };
    const speaker = this.view === "speaker" ? this.speakerKey(cams) : null;
    if (speaker) return { main: [speaker], rest: cams.filter((k) => k !== speaker), pip: null };
    const others = cams.filter((k) => k !== "local").length;
    const pip = cams.includes("local") && others > 0 && (this.narrow.matches || others === 1) ? "local" : null;
    return { main: [], rest: this.paged(cams.filter((k) => k !== pip)), pip };
  }

  /** The grid page of `keys` to show (and the page count, for the pager). */
  paged(keys) {
    const size = this.narrow.matches ? PHONE_PAGE_SIZE : PAGE_SIZE;
    this.pages = Math.max(1, Math.ceil(keys.length / size));
    this.page = Math.min(this.page, this.pages - 1);
    return keys.slice(this.page * size, (this.page + 1) * size);
  }

  /** The pager: shown with more than one page, "page / pages". */
  renderPager(grid) {
    const pages = grid ? this.pages : 1;
    this.stage.classList.toggle("paged", pages > 1);
    if (!this.pager) return;
    this.pager.hidden = pages <= 1;
    this.pager.querySelector("#page-label").textContent = `${this.page + 1} / ${pages}`;
    this.pager.querySelector("#page-prev").disabled = this.page === 0;
    this.pager.querySelector("#page-next").disabled = this.page >= pages - 1;
  }

  /** The camera the speaker view shows large: the speaker's, else the first other person's. */
  speakerKey(cams) {
    if (this.speaker && cams.includes(this.speaker)) return this.speaker;
    return cams.find((k) => k !== "local") || null;
  }

  /** Put the tiles' elements into `container` in this order (moving only what must move). */
  place(container, keys) {
    keys.forEach((key, i) => {
      const el = this.tiles.get(key).el;
      if (container.children[i] !== el) container.insertBefore(el, container.children[i] || null);
    });
  }

  layout() {
    const { main, rest, pip } = this.plan();
    this.place(this.screens, main);
    this.place(this.tilesEl, pip ? [...rest, pip] : rest);
    const shown = new Set([...main, ...rest, pip]);
    for (const [key, tile] of this.tiles) tile.el.hidden = !shown.has(key); // on another grid page
    this.renderPager(main.length === 0);
    for (const [key, tile] of this.tiles) tile.setPinned(key === this.pinned);
    const spotlight = main.length > 0;
    this.stage.classList.toggle("presenting", spotlight);
    this.stage.dataset.layout = spotlight ? "spotlight" : "grid";
    this.stage.dataset.count = String(rest.length + (pip ? 1 : 0));
    this.pip.attach(pip ? this.tiles.get(pip).el : null);
    if (spotlight) {
      this.fitGrid(this.screens, main);
      this.fitStrip(this.tilesEl, rest);
    } else {
      this.fitGrid(this.tilesEl, rest);
    }
    if (pip) this.fitPip(this.tiles.get(pip));
    this.lastShown = [...shown];
    this.onView(this.shownTiles(this.lastShown));
  }

  /** Strip tiles came into or went out of sight (scrolled): the view changes, not the layout. */
  seen(entries) {
    let changed = false;
    for (const entry of entries) {
      const key = entry.target.dataset.key;
      const away = !entry.isIntersecting && this.tilesEl.contains(entry.target);
      if (away !== this.outOfSight.has(key)) {
        changed = true;
        if (away) this.outOfSight.add(key);
        else this.outOfSight.delete(key);
      }
    }
    if (changed) this.onView(this.shownTiles(this.lastShown));
  }

  /** Other people's tiles in `shown` keys, with their CSS sizes (for the page's `view`). */
  shownTiles(shown) {
    const tiles = [];
    const strip = this.stage.dataset.layout === "spotlight";
    for (const key of shown) {
      const match = key && /^(cam|screen):(.+)$/.exec(key);
      if (!match) continue; // mine ("local", "local-screen")
      if (strip && this.outOfSight.has(key)) continue; // scrolled out of the strip
      const el = this.tiles.get(key).el;
      const source = match[1] === "cam" ? "camera" : "screen";
      tiles.push({ peer_id: match[2], source, width: el.clientWidth, height: el.clientHeight });
    }
    return tiles;
  }

  /** Tiles in a box, as large as they fit; one tile takes its picture's own shape. */
  fitGrid(container, keys) {
    const width = container.clientWidth;
    const height = container.clientHeight;
    if (!keys.length || !width || !height) return;
    const tiles = keys.map((k) => this.tiles.get(k));
    const own = tiles.length === 1 ? tiles[0].aspect() : null;
    const screensOnly = tiles.every((t) => t.el.classList.contains("screen"));
    const picture = own || (screensOnly ? 16 / 9 : cameraShape(tiles));
    const ratios = own || screensOnly ? [picture] : [picture, 16 / 9, 4 / 3, 1, 3 / 4];
    const fit = bestOfRatios(tiles.length, width, height, ratios, GAP, picture);
    for (const tile of tiles) tile.size(fit.tileW, fit.tileH);
  }

  /** The camera strip beside (or under) the main area: only whole tiles, scrolled tile by tile. */
  fitStrip(container, keys) {
    const width = container.clientWidth;
    const height = container.clientHeight;
    if (!keys.length || !width || !height) return;
    const horizontal = width > height;
    const ratio = cameraShape(keys.map((k) => this.tiles.get(k)));
    const [length, cross] = horizontal ? [width, height] : [height, width];
    const { along, across } = stripFit(keys.length, length, cross, ratio, { horizontal, gap: GAP });
    const [w, h] = horizontal ? [along, across] : [across, along];
    for (const key of keys) this.tiles.get(key).size(w, h);
  }

  /** My floating camera: small, in its picture's shape. */
  fitPip(tile) {
    const stage = this.stage.clientWidth;
    const narrow = this.narrow.matches;
    const w = Math.round(Math.min(narrow ? 120 : 280, Math.max(96, stage * (narrow ? 0.28 : 0.2))));
    const aspect = tile.aspect() || 4 / 3;
    tile.size(w, Math.round(w / aspect));
  }
}
