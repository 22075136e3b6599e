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
 *        #devices-speaker-field, #devices-error
 */

import { mediaErrorText } from "./media.js";

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
    this.busy = false;
    this.button.addEventListener("click", () => this.open());
    this.camera.addEventListener("change", () => this.choose("camera", this.camera.value));
    this.mic.addEventListener("change", () => this.choose("mic", this.mic.value));
    this.output.addEventListener("change", () => this.choose("speaker", this.output.value));
    // Plugged in or out while open: list what is there now.
    media.addEventListener("devices", () => {
      if (this.dialog.open) this.fill();
    });
    this.dialog.addEventListener("close", () => this.button.focus());
  }

  async open() {
    this.error.textContent = "";
    await this.fill();
    if (!this.dialog.open) this.dialog.showModal();
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
