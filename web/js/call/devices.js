/*
 * Devices during the call: a dialog to switch camera and microphone without leaving, and to
 * choose the speaker the meeting plays through (HTMLMediaElement.setSinkId; the choice is
 * hidden in browsers without it).
 *
 * Switching goes through LocalMedia, whose "track" event the call page already follows: every
 * media engine swaps the track on its senders (replaceTrack, no renegotiation), the self-view
 * and the speaking detector take the new track, the old one is stopped, and the choice is
 * remembered for the next meeting (the same storage as the pre-join screen).
 *
 * Hooks: #open-devices, #devices-dialog, #devices-camera, #devices-mic, #devices-speaker,
 *        #devices-speaker-field, #devices-speaker-test, #devices-level, #devices-error
 */

import { LevelMeter } from "./level.js";
import { mediaErrorText } from "./media.js";

const SEGMENTS = 12;

/**
 * A microphone level as a row of segments in `el` (.level; data-level and aria-valuenow carry
 * 0–100). setTrack(track | null) follows a microphone; stop() ends the animation.
 */
export class SegmentMeter {
  constructor(el) {
    this.el = el;
    this.segments = Array.from({ length: SEGMENTS }, () => document.createElement("span"));
    this.shown = -1;
    el.replaceChildren(...this.segments);
    this.meter = new LevelMeter((level) => this.show(level));
  }

  setTrack(track) {
    this.meter.setTrack(track);
    this.el.classList.toggle("inactive", !track);
  }

  stop() {
    this.meter.stop();
  }

  show(level) {
    const value = Math.round(level * 100);
    if (value === this.shown) return;
    this.shown = value;
    this.el.dataset.level = String(value);
    this.el.setAttribute("aria-valuenow", String(value));
    const lit = Math.ceil(level * SEGMENTS - 0.15);
    this.segments.forEach((s, i) => s.classList.toggle("on", i < lit));
  }
}

/** Whether this browser can send a page's sound to a chosen output device. */
export function canChooseSpeaker() {
  return typeof HTMLMediaElement !== "undefined" && typeof HTMLMediaElement.prototype.setSinkId === "function";
}

/**
 * Fill a <select> with devices ([{deviceId, label}]) and select `selected` when listed; an
 * empty list leaves one disabled option saying so.
 */
export function fillDeviceSelect(select, devices, selected, emptyLabel) {
  if (!devices.length) {
    select.replaceChildren(new Option(emptyLabel, ""));
    select.disabled = true;
    return;
  }
  select.replaceChildren(...devices.map((d) => new Option(d.label, d.deviceId)));
  select.disabled = false;
  if (selected && devices.some((d) => d.deviceId === selected)) select.value = selected;
}

let testSoundUrl = "";

/** A short two-note chime as a WAV file (made once, no asset to ship). */
function testSound() {
  if (testSoundUrl) return testSoundUrl;
  const rate = 22050;
  const notes = [660, 880];
  const noteLength = Math.round(rate * 0.22);
  const samples = notes.length * noteLength;
  const view = new DataView(new ArrayBuffer(44 + samples * 2));
  const text = (at, value) => [...value].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples * 2, true);
  text(8, "WAVEfmt ");
  view.setUint32(16, 16, true); // PCM chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true); // bytes per second
  view.setUint16(32, 2, true); // bytes per frame
  view.setUint16(34, 16, true); // bits per sample
  text(36, "data");
  view.setUint32(40, samples * 2, true);
  for (let i = 0; i < samples; i++) {
    const t = (i % noteLength) / noteLength; // fade each note in and out: no clicks
    const envelope = Math.min(1, t * 20) * Math.min(1, (1 - t) * 4);
    const value = Math.sin((2 * Math.PI * notes[Math.floor(i / noteLength)] * i) / rate) * envelope * 0.35;
    view.setInt16(44 + i * 2, Math.round(value * 32767), true);
  }
  testSoundUrl = URL.createObjectURL(new Blob([view], { type: "audio/wav" }));
  return testSoundUrl;
}

/** Play the test chime through `deviceId` ("" = the default output); rejects when it cannot. */
export async function playTestSound(deviceId) {
  const audio = new Audio(testSound());
  if (deviceId && canChooseSpeaker()) await audio.setSinkId(deviceId);
  await audio.play();
}

/**
 * Every sounding <audio>/<video> under `root`, now and later, plays through one chosen output.
 * Muted elements (my self-view, screen shares) are left alone: Chromium refuses to route them.
 */
export class SpeakerOutput {
  constructor(root, deviceId = "") {
    this.root = root;
    this.deviceId = deviceId;
    this.observer = null;
    if (!canChooseSpeaker()) return;
    // Tiles come and go with people: new media elements get the choice as they appear.
    this.observer = new MutationObserver((records) => {
      for (const record of records) for (const node of record.addedNodes) this.applyWithin(node);
    });
    this.observer.observe(root, { childList: true, subtree: true });
    this.applyWithin(root);
  }

  /** Play through `deviceId` ("" = the system default); rejects when the device refuses. */
  async set(deviceId) {
    const elements = this.elements(this.root);
    await Promise.all(elements.map((el) => el.setSinkId(deviceId)));
    this.deviceId = deviceId;
  }

  stop() {
    if (this.observer) this.observer.disconnect();
  }

  elements(node) {
    if (!(node instanceof Element)) return [];
    const own = node.matches("audio, video") ? [node] : [];
    return [...own, ...node.querySelectorAll("audio, video")].filter((el) => !el.muted);
  }

  applyWithin(node) {
    if (!this.deviceId) return; // the default output needs nothing
    for (const el of this.elements(node)) {
      // A remembered device that is gone (unplugged, another computer): the default plays.
      if (el.sinkId !== this.deviceId) el.setSinkId(this.deviceId).catch(() => {});
    }
  }
}

/** The "Devices" dialog of the call controls. */
export class DevicesDialog {
  /**
   * @param {object} o
   * @param {LocalMedia} o.media
   * @param {SpeakerOutput} o.speaker
   */
  constructor({ media, speaker }) {
    const $ = (id) => document.getElementById(id);
    this.media = media;
    this.speaker = speaker;
    this.button = $("open-devices");
    this.dialog = $("devices-dialog");
    this.camera = $("devices-camera");
    this.mic = $("devices-mic");
    this.output = $("devices-speaker");
    this.outputField = $("devices-speaker-field");
    this.error = $("devices-error");
    this.level = new SegmentMeter($("devices-level"));
    this.busy = false;
    $("devices-speaker-test").addEventListener("click", () => {
      this.error.textContent = "";
      playTestSound(this.speaker.deviceId).catch(() => {
        this.error.textContent = "The test sound could not be played on that speaker.";
      });
    });
    this.button.addEventListener("click", () => this.open());
    this.camera.addEventListener("change", () => this.choose("camera", this.camera.value));
    this.mic.addEventListener("change", () => this.choose("mic", this.mic.value));
    this.output.addEventListener("change", () => this.choose("speaker", this.output.value));
    // Plugged in or out while open: list what is there now.
    media.addEventListener("devices", () => {
      if (this.dialog.open) this.fill();
    });
    media.addEventListener("track", () => {
      if (this.dialog.open) this.followMic();
    });
    this.dialog.addEventListener("close", () => {
      this.level.stop();
      // Back to the button that opened it: on phones it lives in the "More" menu.
      const more = document.getElementById("more-actions");
      (this.button.offsetParent === null && more ? more : this.button).focus();
    });
    // Escape closes the dialog only, not the chat or people panel behind it as well.
    this.dialog.addEventListener("keydown", (event) => {
      if (event.key === "Escape") event.stopPropagation();
    });
  }

  async open() {
    this.error.textContent = "";
    await this.fill();
    if (!this.dialog.open) this.dialog.showModal();
    this.followMic();
  }

  /** The level meter shows the microphone in use (none while muted). */
  followMic() {
    const { audio, micOn } = this.media;
    this.level.setTrack(audio && micOn ? audio : null);
  }

  async fill() {
    let lists;
    try {
      lists = await this.media.devices();
    } catch {
      lists = { cameras: [], microphones: [], speakers: [] };
    }
    const current = this.media.current();
    fillDeviceSelect(this.camera, lists.cameras, current.camera, "No camera found");
    fillDeviceSelect(this.mic, lists.microphones, current.mic, "No microphone found");
    const speakers = canChooseSpeaker() ? lists.speakers : [];
    this.outputField.hidden = speakers.length === 0;
    fillDeviceSelect(this.output, speakers, this.speaker.deviceId || "default", "No speaker found");
  }

  /** Switch one device; on failure say why and show what is in use again. */
  async choose(kind, deviceId) {
    if (this.busy) return;
    this.busy = true;
    this.error.textContent = "";
    this.dialog.setAttribute("aria-busy", "true");
    try {
      if (kind === "camera") await this.media.useCamera(deviceId);
      else if (kind === "mic") await this.media.useMicrophone(deviceId);
      else {
        await this.speaker.set(deviceId);
        this.media.useSpeaker(deviceId);
      }
    } catch (err) {
      this.error.textContent =
        kind === "speaker" ? "That speaker could not be used." : mediaErrorText(err, kind === "mic" ? "microphone" : "camera");
    } finally {
      this.busy = false;
      this.dialog.setAttribute("aria-busy", "false");
      await this.fill();
    }
  }
}
