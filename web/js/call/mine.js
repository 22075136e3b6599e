/*
 * My own media in the call: the state I send, my tile, and the microphone, camera, screen
 * and hand toggles (both engines get my tracks and screen).
 */

import { mediaErrorText } from "./media.js";
import { renderControls, renderPeople } from "./render.js";
import { call, engines } from "./session.js";
import { toast } from "./toast.js";

/** Send my whole state (after each welcome: the server starts everyone at audio/video on). */
export function sendState(changes = call.local) {
  if (call.client) call.client.state(changes);
}

export function syncLocalMedia() {
  const { media } = call;
  call.local.audio = media.micOn && Boolean(media.audio);
  call.local.video = media.camOn && Boolean(media.video);
}

export function updateLocalTile() {
  const tile = call.grid.get("local");
  if (!tile) return;
  const video = call.media.video;
  const current = tile.video.srcObject ? tile.video.srcObject.getVideoTracks()[0] : null;
  if (video !== current) tile.setStream(video ? new MediaStream([video]) : null);
  tile.setState(call.local);
}

export async function toggleMic() {
  try {
    await call.media.setMicEnabled(!call.local.audio);
  } catch (err) {
    toast(mediaErrorText(err, "microphone"), { kind: "warn" });
  }
  syncLocalMedia();
  sendState({ audio: call.local.audio });
  renderControls();
  renderPeople();
}

export async function toggleCamera() {
  try {
    await call.media.setCameraEnabled(!call.local.video);
  } catch (err) {
    toast(mediaErrorText(err, "camera"), { kind: "warn" });
  }
  syncLocalMedia();
  updateLocalTile();
  sendState({ video: call.local.video });
  renderControls();
  renderPeople();
}

export async function toggleScreen() {
  if (call.screenStream) {
    stopScreen();
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } }, audio: false });
  } catch (err) {
    if (err && err.name !== "NotAllowedError" && err.name !== "AbortError") {
      toast("Your screen could not be shared.", { kind: "warn" });
    }
    return;
  }
  if (call.finished) {
    for (const t of stream.getTracks()) t.stop();
    return;
  }
  const track = stream.getVideoTracks()[0];
  if ("contentHint" in track) track.contentHint = "detail";
  track.addEventListener("ended", () => {
    if (call.screenStream === stream) stopScreen();
  });
  call.screenStream = stream;
  for (const media of engines()) media.setScreen(stream);
  call.local.screen = true;
  sendState({ screen: true });
  call.grid.ensure("local-screen", { local: true, screen: true, name: "Your screen" }).setStream(stream);
  renderControls();
  renderPeople();
}

export function stopScreen() {
  const stream = call.screenStream;
  if (!stream) return;
  call.screenStream = null;
  for (const t of stream.getTracks()) t.stop();
  for (const media of engines()) media.setScreen(null);
  call.local.screen = false;
  sendState({ screen: false });
  call.grid.remove("local-screen");
  renderControls();
  renderPeople();
}

export function toggleHand() {
  call.local.hand = !call.local.hand;
  sendState({ hand: call.local.hand });
  renderControls();
  renderPeople();
}
