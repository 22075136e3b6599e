/*
 * Dynacast: send only the camera's simulcast encodings somebody uses. No DOM.
 *
 * In relay rooms the server's `layers` message ({source: "camera", rids}, docs/protocol.md)
 * lists the encodings (RIDs of encodings.js) any subscriber can use; the others are paused
 * (encoding.active = false), so a camera that is only a thumbnail, or on nobody's screen, costs
 * its publisher neither the encoding nor the upload of the larger layers. `[]` pauses them all.
 *
 *   const layers = new CameraLayers(warn)
 *   layers.attach(sender)   the relay connection's camera sender (a new connection: reset() first)
 *   layers.set(rids)        a `layers` message: remembered and applied
 *   layers.refit()          the camera track changed or the connection renegotiated: apply again
 *                           (the new track's size, encodings.js, with the latest rids)
 *   layers.reset()          the relay connection closed: back to "send everything"
 *
 * Chromium rejects a setParameters() made while another is pending (and a getParameters()
 * taken before it), so the updates run one at a time and coalesce: only the latest state is
 * applied after the one in flight. Failures are logged, never thrown.
 */

import { fitCameraLayers } from "./encodings.js";

/** The `rids` of a `layers` message for the camera, or null when it is not one to follow. */
export function cameraRids(message) {
  if (!message || message.source !== "camera" || !Array.isArray(message.rids)) return null;
  return message.rids.every((rid) => typeof rid === "string") ? [...message.rids] : null;
}

export class CameraLayers {
  constructor(warn = (what, err) => console.warn(`meet layers: ${what}`, err)) {
    this.warn = warn;
    this.sender = null;
    this.rids = null; // null: send every encoding (no `layers` yet on this connection)
    this.wanted = false; // an update is due
    this.draining = false;
    this.done = Promise.resolve();
  }

  /** The camera sender of a new relay connection; the remembered rids apply to it too. */
  attach(sender) {
    this.sender = sender;
    if (this.rids) this.refit();
  }

  /** Follow a `layers` message: send only `rids` (low → high); [] sends no video. */
  set(rids) {
    this.rids = [...rids];
    return this.refit();
  }

  /** Apply the track's ladder and the latest rids again; resolves when done (never rejects). */
  refit() {
    this.wanted = true;
    if (!this.draining) {
      this.draining = true;
      this.done = this.drain();
    }
    return this.done;
  }

  /** The relay connection is gone (closed, rebuilt, or the room went back to mesh). */
  reset() {
    this.sender = null;
    this.rids = null;
    this.wanted = false;
  }

  async drain() {
    await null; // let the caller's synchronous updates coalesce into this one
    while (this.wanted) {
      this.wanted = false;
      const sender = this.sender;
      if (!sender) continue;
      try {
        await fitCameraLayers(sender, sender.track, this.rids);
      } catch (err) {
        this.warn("could not change the camera's encodings", err);
      }
    }
    this.draining = false;
  }
}
