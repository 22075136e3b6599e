/*
 * What my camera and screen send through the relay: RTCRtpEncodingParameters. No DOM.
 *
 * - Camera: simulcast, three spatial layers listed low to high, each with its RID ("l", "m",
 *   "h"), scaled 4/2/1 at ≈150 k / 500 k / 1.5 Mbps. The relay forwards one of them to each
 *   subscriber, from that subscriber's bandwidth, without re-encoding. Chrome sends as many
 *   layers as the capture size allows (three from 960×540 up).
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

/** addTransceiver() init of my camera on the relay connection (fresh objects each call). */
export function cameraInit(streams) {
  return { direction: "sendonly", streams, sendEncodings: CAMERA_LAYERS.map((layer) => ({ ...layer })) };
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
