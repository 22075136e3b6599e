/*
 * Stage geometry, as pure functions (no DOM): the grid's best tile size, the size of tiles in
 * a camera strip that shows only whole tiles, and whether a video may be cropped to its tile.
 */

export const GAP = 10;

/** Best layout of n tiles of ratio `aspect` in a width×height box: {cols, tileW, tileH}. */
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

/**
 * The best of bestFit over several tile shapes: {cols, tileW, tileH, ratio}. "Best" is the most
 * picture shown: a tile whose shape differs from the cameras' (`picture`, w/h) letterboxes them,
 * so only the part of its area the picture covers counts.
 */
export function bestOfRatios(n, width, height, ratios, gap = GAP, picture = null) {
  let best = null;
  let bestScore = -1;
  for (const ratio of ratios) {
    const fit = bestFit(n, width, height, ratio, gap);
    const shown = picture && !mayCover(picture, ratio) ? Math.min(picture, ratio) / Math.max(picture, ratio) : 1;
    const score = fit.tileW * fit.tileH * shown;
    if (score > bestScore) {
      best = { ...fit, ratio };
      bestScore = score;
    }
  }
  return best;
}

/**
 * Tiles of a strip (a row or a column of `n` tiles of shape `ratio` = w/h) that shows only
 * whole tiles: all of them when they fit at `min` length or more, else as many whole tiles as
 * fit, the rest reached by scrolling tile by tile. `length` runs along the strip, `cross`
 * across it. Returns {along, across}: the tile's size along and across the strip.
 */
export function stripFit(n, length, cross, ratio, { horizontal, min = 96, gap = GAP }) {
  if (!n || length <= 0 || cross <= 0) return { along: 0, across: 0 };
  // The largest tile the cross size allows, measured along the strip.
  const natural = horizontal ? cross * ratio : cross / ratio;
  const fitAll = (length - gap * (n - 1)) / n;
  let along = Math.min(natural, fitAll);
  if (along < min) {
    const visible = Math.max(1, Math.floor((length + gap) / (min + gap)));
    along = Math.min(natural, (length - gap * (visible - 1)) / visible);
  }
  const across = horizontal ? along / ratio : along * ratio;
  return { along: Math.floor(along), across: Math.floor(Math.min(cross, across)) };
}

/** Whether a video of aspect `video` may fill (crop to) a tile of aspect `tile`: only when
 * they nearly match (at most ~12% of the picture is lost); otherwise it is letterboxed. */
export function mayCover(video, tile) {
  if (!video || !tile) return true;
  return Math.min(video, tile) / Math.max(video, tile) >= 0.88;
}
