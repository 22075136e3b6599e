/*
 * The video stage: one tile per camera and one per screen share.
 *
 * Camera tiles flow in #tiles, screen tiles in #screens. A ResizeObserver picks, for the
 * number of tiles and the room available, the column count and tile shape (16:9 or 4:3 on
 * wide stages; 16:9, square or 3:4 on tall ones) that give the largest tiles, and hands the
 * size to CSS as --tile-w / --tile-h.
 * While someone presents, the stage puts the screens first and the cameras in a strip.
 *
 * Tile markup (hooks used by tests):
 *   .tile[data-peer-id]  remote camera        .tile.local            my camera (mirrored)
 *   .tile.screen[data-peer-id]  remote screen .tile.screen.local     my screen
 *   classes: muted (mic off), camera-off, hand, speaking
 */

import { icon } from "./icons.js";

const GAP = 10;
const MIN_STRIP_TILE = 150;

/** Best layout of n tiles of ratio `aspect` in a w×h box: {cols, tileW, tileH}. */
export function bestFit(n, width, height, aspect, gap = GAP) {
  let best = { cols: 1, tileW: 0, tileH: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    const cellW = (width - gap * (cols - 1)) / cols;
    const cellH = (height - gap * (rows - 1)) / rows;
    const tileW = Math.min(cellW, cellH * aspect);
    if (tileW > best.tileW) best = { cols, tileW, tileH: tileW / aspect };
  }
  return { cols: best.cols, tileW: Math.floor(best.tileW), tileH: Math.floor(best.tileH) };
}

/** The first letter of a name, for camera-off avatars. */
function initialOf(name) {
  return (String(name || "?").trim().charAt(0) || "?").toUpperCase();
}

/** A hue from a name, so each person keeps the same avatar colour. */
function hueOf(name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

class Tile {
  constructor({ peerId, local, screen, name }) {
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
    hand.append(icon("hand"));

    const bar = document.createElement("div");
    bar.className = "tile-bar";
    const mic = document.createElement("span");
    mic.className = "tile-mic";
    mic.title = "Microphone off";
    mic.append(icon("mic-off"));
    if (screen) bar.append(icon("screen", "tile-screen-icon"));
    this.nameEl = document.createElement("span");
    this.nameEl.className = "tile-name";
    bar.append(mic, this.nameEl);

    this.status = document.createElement("p");
    this.status.className = "tile-status";
    this.status.hidden = true;

    this.el.append(this.video, this.avatar, hand, bar, this.status);
    this.setName(name);
  }

  setName(name) {
    this.name = name;
    this.nameEl.textContent = name;
    this.avatarLetter.textContent = initialOf(name);
    this.avatar.style.setProperty("--avatar-hue", String(hueOf(name))); // CSSOM: allowed by the CSP
    this.el.setAttribute("aria-label", name);
  }

  /** Show a MediaStream (null clears). Autoplay refusals are reported to onBlocked. */
  setStream(stream, onBlocked) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    if (!stream) return;
    const played = this.video.play();
    if (played && played.catch) {
      played.catch((err) => {
        if (err && err.name === "NotAllowedError" && !this.video.muted && onBlocked) onBlocked(this);
      });
    }
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

  /** A small notice over the video ("Connecting…"), or null to hide it. */
  setStatus(text) {
    this.status.textContent = text || "";
    this.status.hidden = !text;
  }
}

export class Grid {
  /** `stage` holds two containers: `screens` and `tiles`. */
  constructor({ stage, screens, tiles }) {
    this.stage = stage;
    this.screens = screens;
    this.tilesEl = tiles;
    this.tiles = new Map(); // key → Tile
    this.observer = new ResizeObserver(() => this.layout());
    this.observer.observe(stage);
  }

  /** Get or create a tile. Keys: "local", "local-screen", "cam:<peer>", "screen:<peer>". */
  ensure(key, options) {
    let tile = this.tiles.get(key);
    if (!tile) {
      tile = new Tile(options);
      this.tiles.set(key, tile);
      const container = options.screen ? this.screens : this.tilesEl;
      if (options.local && !options.screen) container.prepend(tile.el);
      else container.append(tile.el);
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
    tile.video.srcObject = null;
    tile.el.remove();
    this.tiles.delete(key);
    this.layout();
  }

  /** Keys of the tiles currently shown. */
  keys() {
    return [...this.tiles.keys()];
  }

  layout() {
    const screens = this.screens.children.length;
    const cams = this.tilesEl.children.length;
    const presenting = screens > 0;
    this.stage.classList.toggle("presenting", presenting);
    this.stage.dataset.count = String(cams);
    this.fit(this.screens, screens, 16 / 9, false);
    this.fit(this.tilesEl, cams, null, presenting);
  }

  fit(container, n, aspect, strip) {
    if (!n) return;
    const width = container.clientWidth;
    const height = container.clientHeight;
    if (!width || !height) return;
    // Cameras may be cropped (object-fit: cover), so try a few shapes and keep the biggest.
    const ratios = aspect ? [aspect] : width >= height ? [16 / 9, 4 / 3] : [16 / 9, 1, 3 / 4];
    let best = null;
    for (const r of ratios) {
      const fit = bestFit(n, width, height, r);
      if (!best || fit.tileW * fit.tileH > best.tileW * best.tileH) best = { ...fit, ratio: r };
    }
    const ratio = best.ratio;
    let { tileW, tileH } = best;
    if (strip && tileW < MIN_STRIP_TILE) {
      tileW = MIN_STRIP_TILE; // the strip scrolls instead of shrinking further
      tileH = Math.floor(tileW / ratio);
    }
    container.style.setProperty("--tile-w", `${tileW}px`);
    container.style.setProperty("--tile-h", `${tileH}px`);
  }
}
