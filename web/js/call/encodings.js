/*
 * What my camera and screen send through the relay: RTCRtpEncodingParameters. No DOM.
 *
 * - Camera: simulcast, three spatial layers listed low to high, each with its RID ("l", "m",
 *   "h"), scaled 4/2/1 at ≈150 k / 500 k / 1.5 Mbps. The relay forwards one of them to each
 *   subscriber, from that subscriber's bandwidth, without re-encoding. Chromium encodes only as
 *   many layers as the capture size allows (three from 960×540, two from 480×270, else one),
 *   and drops the LAST encodings: a smaller camera gets the top rungs of the ladder on its
 *   first encodings (640×360: 320 and 640 wide, the third inactive), so its full size still goes
 *   out. The RIDs stay as negotiated; the relay ranks a publisher's layers by measured rate.
 * - Screen: one layer at full resolution, with three temporal layers (L1T3) when the browser
 *   takes them.
 * The relay accepts the camera's simulcast in its answer (a=simulcast:recv, a=rid … recv and the
 * RID header extensions) and keeps it in its own offers: Chromium refuses to answer an offer that
 * drops the RID extension from a simulcast m-line.
 */

export const CAMERA_LAYERS = Object.freeze([
  Object.freeze({ rid: "l", scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: "m", scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: "h", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

export const SCREEN_SCALABILITY = "L1T3";

/** How many spatial layers Chromium encodes from a width×height capture (libwebrtc's table). */
export function layerCount(width, height) {
  const pixels = (width || 0) * (height || 0);
  if (!pixels || pixels >= 960 * 540) return 3; // unknown size: the full ladder
  return pixels >= 480 * 270 ? 2 : 1;
}

/** The ladder for a capture: the top n rungs on the first n encodings, the rest inactive. */
function fitted(width, height) {
  const n = layerCount(width, height);
  const top = CAMERA_LAYERS.slice(CAMERA_LAYERS.length - n);
  return CAMERA_LAYERS.map((layer, i) =>
    i < n ? { scaleResolutionDownBy: top[i].scaleResolutionDownBy, maxBitrate: top[i].maxBitrate, active: true } : { active: false },
  );
}

function sizeOf(track) {
  const { width, height } = track && track.getSettings ? track.getSettings() : {};
  return [width, height];
}

/** addTransceiver() init of my camera (`track`, or null) on the relay connection. */
export function cameraInit(streams, track = null) {
  const ladder = fitted(...sizeOf(track));
  return { direction: "sendonly", streams, sendEncodings: CAMERA_LAYERS.map((layer, i) => ({ ...layer, ...ladder[i] })) };
}

/**
 * Fit the camera sender's layers to a new track (another camera, or the camera turned on
 * again): resolves true when they changed. The encodings negotiated stay (same RIDs).
 * `rids` (the relay's `layers`, layers.js), when given, pauses every encoding not listed.
 */
export async function fitCameraLayers(sender, track, rids = null) {
  if (!track) return false;
  const params = sender.getParameters();
  if (!params.encodings || params.encodings.length !== CAMERA_LAYERS.length) return false;
  const ladder = fitted(...sizeOf(track));
  let changed = false;
  params.encodings.forEach((enc, i) => {
    const wanted = rids && !rids.includes(enc.rid) ? { ...ladder[i], active: false } : ladder[i];
    for (const [key, value] of Object.entries(wanted)) {
      if (enc[key] !== value) {
        enc[key] = value;
        changed = true;
      }
    }
  });
  if (changed) await sender.setParameters(params);
  return changed;
}

/**
 * Add my screen's transceiver: one full-resolution encoding with temporal layers, or plain when
 * the browser refuses the scalability mode (it throws on addTransceiver for unknown modes).
 */
export function addScreenTransceiver(pc, track, stream) {
  const init = { direction: "sendonly", streams: [stream] };
  try {
    return pc.addTransceiver(track, { ...init, sendEncodings: [{ scalabilityMode: SCREEN_SCALABILITY }] });
  } catch {
    return pc.addTransceiver(track, init);
  }
}
