/*
 * Stroke icons (24×24) built as SVG elements: inline SVG needs no style attributes, so the
 * CSP stays strict. Styled by the .icon class in app.css.
 */

const PATHS = {
  mic: "M12 3a3 3 0 0 1 3 3v5a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3zM5.5 11a6.5 6.5 0 0 0 13 0M12 17.5V21M8.5 21h7",
  "mic-off":
    "M15 9.4V6a3 3 0 0 0-5.7-1.3M9 9v2a3 3 0 0 0 4.9 2.3M18.5 11a6.5 6.5 0 0 1-1 3.4M5.5 11a6.5 6.5 0 0 0 10.3 5.3M12 17.5V21M8.5 21h7M4 4l16 16",
  camera: "M5.5 6.5h7.5a2.5 2.5 0 0 1 2.5 2.5v6a2.5 2.5 0 0 1-2.5 2.5H5.5A2.5 2.5 0 0 1 3 15V9a2.5 2.5 0 0 1 2.5-2.5zM15.5 10.5l5-3v9l-5-3",
  "camera-off":
    "M15.5 13.5l5 3v-9l-5 3M10.8 6.5h2.2a2.5 2.5 0 0 1 2.5 2.5v2.2M15.5 15v.5a2.5 2.5 0 0 1-2.5 2.5H5.5A2.5 2.5 0 0 1 3 15.5V9a2.5 2.5 0 0 1 2.2-2.5M3 3l18 18",
  screen: "M5 4.5h14a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-8a2 2 0 0 1 2-2zM8.5 20h7M12 16.5V20M12 13V8M9.5 10.5 12 8l2.5 2.5",
  hand:
    "M8 12.5V6a1.5 1.5 0 0 1 3 0v5M11 10.5V4.5a1.5 1.5 0 0 1 3 0v6M14 10.5V6a1.5 1.5 0 0 1 3 0v8a7 7 0 0 1-7 7h-.4a6 6 0 0 1-4.8-2.4l-2.5-3.3a1.6 1.6 0 0 1 2.4-2.1L8 15.5",
  chat: "M20 15a2 2 0 0 1-2 2H8l-4 4V5a2 2 0 0 1 2-2h12a2 2 0 0 1 2 2z",
  people: "M9 4.5a3.5 3.5 0 1 1 0 7 3.5 3.5 0 0 1 0-7zM2.5 20a6.5 6.5 0 0 1 13 0M16 4.6a3.5 3.5 0 0 1 0 6.8M18 14a6.5 6.5 0 0 1 3.5 6",
  link: "M10 14a4.5 4.5 0 0 0 6.4 0l3-3a4.5 4.5 0 0 0-6.4-6.4l-1 1M14 10a4.5 4.5 0 0 0-6.4 0l-3 3a4.5 4.5 0 0 0 6.4 6.4l1-1",
  check: "M5 12.5l4.5 4.5L19 7.5",
  leave:
    "M3.3 14.6c-.5-.5-.5-1.4.1-1.9C5.8 10.5 8.8 9.4 12 9.4s6.2 1.1 8.6 3.3c.6.5.6 1.4.1 1.9l-1.6 1.6c-.5.5-1.2.5-1.7.2l-2.1-1.3a1.3 1.3 0 0 1-.6-1.1v-1.9a13 13 0 0 0-5.4 0V14c0 .5-.2.9-.6 1.1l-2.1 1.3c-.5.3-1.2.3-1.7-.2z",
  send: "M4 12 20 4l-6 16-2.5-6.5zM11.5 13.5 20 4",
  close: "M6 6l12 12M18 6 6 18",
  lock: "M7 10.5h10a2 2 0 0 1 2 2v6a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2v-6a2 2 0 0 1 2-2zM8 10.5V7.5a4 4 0 0 1 8 0v3",
  unlock: "M7 10.5h10a2 2 0 0 1 2 2v6a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2v-6a2 2 0 0 1 2-2zM8 10.5V7.5a4 4 0 0 1 7.7-1.5",
  pin: "M8.5 3.5h7M9.6 3.5l-.6 6.2-2.7 2.8v1.6h11.4v-1.6L15 9.7l-.6-6.2M12 14.1v6.4",
  more: "M12 5.5h.01M12 12h.01M12 18.5h.01",
  search: "M11 4.5a6.5 6.5 0 1 1 0 13 6.5 6.5 0 0 1 0-13zM20 20l-4.2-4.2",
  phone:
    "M6.6 3.5h2.2c.5 0 .9.3 1 .8l.8 3.5c.1.4-.1.9-.5 1.1l-1.7 1a11 11 0 0 0 5.7 5.7l1-1.7c.2-.4.7-.6 1.1-.5l3.5.8c.5.1.8.5.8 1v2.2a2 2 0 0 1-2.2 2A16.5 16.5 0 0 1 4.6 5.7a2 2 0 0 1 2-2.2z",
};

const SVG_NS = "http://www.w3.org/2000/svg";

/** An <svg class="icon …"> for `name` (decorative: aria-hidden). */
export function icon(name, className = "") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", `icon${className ? ` ${className}` : ""}`);
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", PATHS[name] || "");
  svg.append(path);
  return svg;
}
