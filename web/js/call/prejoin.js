/*
 * The pre-join screen: camera preview, microphone level meter, device choice, mic / camera
 * toggles and who is already in the meeting, until "Join meeting" is pressed.
 *
 * Hooks: #prejoin, #prejoin-video, #mic-level (data-level / aria-valuenow 0–100),
 *        #camera-select, #mic-select, #speaker-select (+ #speaker-field, #speaker-test: only
 *        where the browser can choose an output), #join-button
 */

import { getRoom } from "../api.js";
import { avatarHue, initialOf } from "./avatar.js";
import { SegmentMeter, canChooseSpeaker, fillDeviceSelect, playTestSound } from "./devices.js";
import { mediaErrorText } from "./media.js";

const WHO_REFRESH_MS = 10000;
// Why the server left out who is in the meeting (GET /api/rooms/{code} participants_hidden).
const HIDDEN_REASONS = {
  room_locked: "This meeting is locked: the host can let you in.",
  removed: "The host removed you from this meeting.",
};

/** "alice", "alice and bob", "alice, bob and 3 others" */
export function namesSentence(names) {
  if (names.length <= 2) return names.join(" and ");
  const rest = names.length - 2;
  return `${names[0]}, ${names[1]} and ${rest} other${rest === 1 ? "" : "s"}`;
}

export class Prejoin {
  /** `seeWho`: ask the server who is in the meeting (members only: guests have no REST access). */
  constructor({ media, user, code, seeWho = true }) {
    this.media = media;
    this.user = user;
    this.code = code;
    this.seeWho = seeWho;
    const $ = (id) => document.getElementById(id);
    this.root = $("prejoin");
    this.video = $("prejoin-video");
    this.off = $("prejoin-off");
    this.offText = $("prejoin-off-text");
    this.micButton = $("prejoin-mic");
    this.camButton = $("prejoin-camera");
    this.level = $("mic-level");
    this.cameraSelect = $("camera-select");
    this.micSelect = $("mic-select");
    this.speakerField = $("speaker-field");
    this.speakerSelect = $("speaker-select");
    this.error = $("prejoin-error");
    this.who = $("prejoin-who");
    this.joinButton = $("join-button");
    this.previewTrack = null;
    this.whoTimer = 0;
    this.meter = null; // the level meter, once the screen is shown
    this.onTrack = () => this.refresh();
    this.onDevices = () => this.fillDevices();
  }

  /** Render the room, start the devices and wait for "Join meeting" → resolves then. */
  run(room) {
    document.getElementById("prejoin-room").textContent = room.title;
    document.getElementById("prejoin-lock").hidden = !room.locked;
    document.getElementById("prejoin-user").textContent = this.user.username;
    const avatar = document.getElementById("prejoin-avatar");
    avatar.textContent = initialOf(this.user.username);
    avatar.style.setProperty("--avatar-hue", String(avatarHue(this.user)));
    this.meter = new SegmentMeter(this.level);
    this.root.hidden = false;
    this.joinButton.disabled = true;

    this.micButton.addEventListener("click", () => this.toggle("mic"));
    this.camButton.addEventListener("click", () => this.toggle("camera"));
    this.cameraSelect.addEventListener("change", () => this.switchDevice("camera", this.cameraSelect.value));
    this.micSelect.addEventListener("change", () => this.switchDevice("mic", this.micSelect.value));
    // The meeting's sound plays through it once joined (call/devices.js SpeakerOutput).
    this.speakerSelect.addEventListener("change", () => this.media.useSpeaker(this.speakerSelect.value));
    document.getElementById("speaker-test").addEventListener("click", () => {
      this.error.textContent = "";
      playTestSound(this.media.speakerId).catch(() => {
        this.error.textContent = "The test sound could not be played on that speaker.";
      });
    });
    this.media.addEventListener("track", this.onTrack);
    this.media.addEventListener("devices", this.onDevices);

    if (this.seeWho) {
      this.refreshWho();
      this.whoTimer = setInterval(() => this.refreshWho(), WHO_REFRESH_MS);
    }

    // Joining does not wait for the devices (a permission prompt may stay open): tracks
    // that arrive later are sent as soon as they are there.
    this.offText.textContent = "Starting camera…";
    this.joinButton.disabled = false;
    this.joinButton.focus();
    this.media
      .start()
      .then(() => {
        this.reportErrors();
        this.refresh();
        return this.fillDevices();
      })
      .catch((err) => {
        this.error.textContent = mediaErrorText(err);
      });

    return new Promise((resolve) => {
      this.joinButton.addEventListener("click", () => resolve(), { once: true });
    });
  }

  /** Busy state while connecting; `false` re-enables the button (e.g. after a failure). */
  setBusy(on) {
    this.joinButton.disabled = on;
    this.joinButton.setAttribute("aria-busy", String(on));
    this.joinButton.textContent = on ? "Joining…" : "Join meeting";
  }

  /** Leave the screen: stop the meter and timers (the devices stay on for the call). */
  close() {
    clearInterval(this.whoTimer);
    this.meter.stop();
    this.media.removeEventListener("track", this.onTrack);
    this.media.removeEventListener("devices", this.onDevices);
    this.video.srcObject = null;
    this.root.hidden = true;
  }

  // ---- internals ---------------------------------------------------------------------

  async toggle(which) {
    this.error.textContent = "";
    try {
      if (which === "mic") await this.media.setMicEnabled(!this.media.micOn);
      else await this.media.setCameraEnabled(!this.media.camOn);
    } catch (err) {
      this.error.textContent = mediaErrorText(err, which === "mic" ? "microphone" : "camera");
    }
    this.refresh();
  }

  async switchDevice(which, deviceId) {
    this.error.textContent = "";
    try {
      if (which === "mic") await this.media.useMicrophone(deviceId);
      else await this.media.useCamera(deviceId);
    } catch (err) {
      this.error.textContent = mediaErrorText(err, which === "mic" ? "microphone" : "camera");
    }
    this.refresh();
  }

  reportErrors() {
    const { audio, video } = this.media.errors;
    if (audio && video) this.error.textContent = mediaErrorText(audio);
    else if (video) this.error.textContent = mediaErrorText(video, "camera");
    else if (audio) this.error.textContent = mediaErrorText(audio, "microphone");
  }

  /** Sync preview, overlay, toggles and meter with the media state. */
  refresh() {
    const { audio, video, micOn, camOn } = this.media;
    if (video !== this.previewTrack) {
      this.previewTrack = video;
      this.video.srcObject = video ? new MediaStream([video]) : null;
      if (video) this.video.play().catch(() => {});
    }
    const showVideo = Boolean(video) && camOn;
    this.off.hidden = showVideo;
    this.offText.textContent = camOn ? (this.media.errors.video ? "Camera unavailable" : "Starting camera…") : "Camera is off";
    const micActive = Boolean(audio) && micOn;
    this.setToggle(this.micButton, micActive, micActive ? "Turn off microphone" : "Turn on microphone");
    this.setToggle(this.camButton, showVideo, showVideo ? "Turn off camera" : "Turn on camera");
    this.meter.setTrack(micActive ? audio : null);
    const current = this.media.current();
    if (current.camera) this.cameraSelect.value = current.camera;
    if (current.mic) this.micSelect.value = current.mic;
  }

  /** aria-pressed carries the state; the tooltip says what a click does. */
  setToggle(button, on, hint) {
    button.setAttribute("aria-pressed", String(on));
    button.title = hint;
  }

  async fillDevices() {
    let lists;
    try {
      lists = await this.media.devices();
    } catch {
      return;
    }
    const current = this.media.current();
    fillDeviceSelect(this.cameraSelect, lists.cameras, current.camera, "No camera found");
    fillDeviceSelect(this.micSelect, lists.microphones, current.mic, "No microphone found");
    const speakers = canChooseSpeaker() ? lists.speakers || [] : [];
    this.speakerField.hidden = speakers.length === 0;
    fillDeviceSelect(this.speakerSelect, speakers, this.media.speakerId || "default", "No speaker found");
  }

  async refreshWho() {
    const result = await getRoom(this.code);
    if (!result.ok || !result.data) return;
    const hidden = result.data.room.participants_hidden;
    if (hidden) {
      this.who.textContent = HIDDEN_REASONS[hidden] || "You cannot see who is in this meeting.";
      return;
    }
    const people = result.data.room.participants || [];
    const names = [...new Set(people.map((p) => p.user.username))];
    this.who.textContent = names.length
      ? `${namesSentence(names)} ${names.length === 1 ? "is" : "are"} in this meeting.`
      : "No one else is here yet.";
  }
}
