/*
 * My microphone and camera: acquisition, device choice, on/off. No DOM.
 *
 * The microphone is muted with track.enabled (instant, no new permission prompt); turning the
 * camera off stops its track so the camera light goes out, and turning it on acquires a new one.
 * Every track change is announced as a "track" event {kind: "audio"|"video", track|null} so the
 * mesh can replaceTrack() on its connections. Device choices (camera, microphone and speaker)
 * are remembered per browser.
 */

import { readJson, writeJson } from "../storage.js";

const VIDEO_CONSTRAINTS = { width: { ideal: 960 }, height: { ideal: 540 }, frameRate: { ideal: 30, max: 30 } };
const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const STORAGE_KEY = "meet-devices";

function loadChoice() {
  const value = readJson(window.localStorage, STORAGE_KEY);
  return value && typeof value === "object" ? value : {};
}

function saveChoice(choice) {
  writeJson(window.localStorage, STORAGE_KEY, choice);
}

/** A person-readable reason for a getUserMedia failure. */
export function mediaErrorText(err, what = "camera and microphone") {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return `Access to your ${what} is blocked. Allow it in your browser's site settings, then reload.`;
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") return `No ${what} was found.`;
  if (name === "NotReadableError" || name === "AbortError") {
    return `Your ${what} is in use by another application or could not be started.`;
  }
  if (name === "NotSupported") return "This browser cannot use a camera or microphone here (a secure https:// address is required).";
  return `Could not start your ${what}.`;
}

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    const saved = loadChoice();
    this.micId = typeof saved.mic === "string" ? saved.mic : "";
    this.camId = typeof saved.camera === "string" ? saved.camera : "";
    this.speakerId = typeof saved.speaker === "string" ? saved.speaker : ""; // "" = system default
    this.audio = null; // MediaStreamTrack | null
    this.video = null;
    this.micOn = true;
    this.camOn = true;
    this.errors = { audio: null, video: null }; // the last failure per kind (an Error) or null
    this.preview = new MediaStream(); // my current tracks, for local <video> elements
    this.queue = Promise.resolve(); // device operations run one at a time
  }

  get supported() {
    return Boolean(navigator.mediaDevices && navigator.mediaDevices.getUserMedia);
  }

  /** First acquisition: both devices with one prompt when possible, else whichever works. */
  start() {
    return this.serial(async () => {
      if (!this.supported) {
        const err = Object.assign(new Error("getUserMedia is unavailable"), { name: "NotSupported" });
        this.errors = { audio: err, video: err };
        return;
      }
      try {
        const stream = await navigator.mediaDevices.getUserMedia({
          audio: this.audioConstraints(),
          video: this.videoConstraints(),
        });
        this.errors = { audio: null, video: null };
        this.adopt("audio", stream.getAudioTracks()[0] || null);
        this.adopt("video", stream.getVideoTracks()[0] || null);
      } catch (err) {
        // One device may be missing or blocked: try each alone.
        await this.acquire("audio").catch(() => {});
        await this.acquire("video").catch(() => {});
        if (!this.audio && !this.video) this.errors = { audio: err, video: err };
      }
      if (navigator.mediaDevices.addEventListener) {
        navigator.mediaDevices.addEventListener("devicechange", () => this.emit("devices", {}));
      }
    });
  }

  /** Microphone on/off (acquires one if there is none yet). Rejects when it cannot start. */
  setMicEnabled(on) {
    return this.serial(async () => {
      this.micOn = on;
      if (on && !this.audio) await this.acquire("audio");
      if (this.audio) this.audio.enabled = on;
      this.emit("state", {});
    });
  }

  /** Camera on/off: off releases the camera, on acquires it again. */
  setCameraEnabled(on) {
    return this.serial(async () => {
      this.camOn = on;
      if (!on) this.adopt("video", null);
      else if (!this.video) await this.acquire("video");
      this.emit("state", {});
    });
  }

  /** Switch to another microphone (deviceId from devices()); a failure keeps the old one. */
  useMicrophone(deviceId) {
    return this.serial(async () => {
      const before = this.micId;
      this.micId = deviceId;
      if (this.audio || this.micOn) {
        try {
          await this.acquire("audio", true);
        } catch (err) {
          this.micId = before;
          throw err;
        }
      }
      this.remember();
    });
  }

  /**
   * Switch to another camera; takes effect now when the camera is on. The new camera opens
   * while the old one still sends (no gap, no "camera off" flash for the others); phones that
   * cannot open two cameras at once get the old one released first and a second try.
   */
  useCamera(deviceId) {
    return this.serial(async () => {
      const before = this.camId;
      this.camId = deviceId;
      if (this.camOn) {
        try {
          await this.acquire("video", true);
        } catch {
          this.adopt("video", null);
          try {
            await this.acquire("video", true);
          } catch (err) {
            this.camId = before; // keep the camera that worked (the caller may start it again)
            throw err;
          }
        }
      }
      this.remember();
    });
  }

  /** Remember the speaker (audio output) to play the meeting through; "" for the default. */
  useSpeaker(deviceId) {
    this.speakerId = deviceId || "";
    this.remember();
  }

  /** {cameras, microphones, speakers}: [{deviceId, label}] with readable fallback labels. */
  async devices() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) {
      return { cameras: [], microphones: [], speakers: [] };
    }
    const all = await navigator.mediaDevices.enumerateDevices();
    const pick = (kind, noun) =>
      all
        .filter((d) => d.kind === kind && d.deviceId)
        .map((d, i) => ({ deviceId: d.deviceId, label: d.label || `${noun} ${i + 1}` }));
    return {
      cameras: pick("videoinput", "Camera"),
      microphones: pick("audioinput", "Microphone"),
      speakers: pick("audiooutput", "Speaker"),
    };
  }

  /** The device ids of the tracks in use (or the remembered choice). */
  current() {
    const idOf = (track, fallback) => (track && track.getSettings().deviceId) || fallback;
    return { mic: idOf(this.audio, this.micId), camera: idOf(this.video, this.camId) };
  }

  /** Release both devices. */
  stop() {
    this.adopt("audio", null);
    this.adopt("video", null);
  }

  // ---- internals -----------------------------------------------------------------

  audioConstraints(exact = false) {
    const c = { ...AUDIO_CONSTRAINTS };
    if (this.micId) c.deviceId = exact ? { exact: this.micId } : this.micId;
    return c;
  }

  videoConstraints(exact = false) {
    const c = { ...VIDEO_CONSTRAINTS };
    if (this.camId) c.deviceId = exact ? { exact: this.camId } : this.camId;
    return c;
  }

  /** Get a fresh track of `kind`; records and rethrows failures. */
  async acquire(kind, exact = false) {
    const constraints = kind === "audio" ? { audio: this.audioConstraints(exact) } : { video: this.videoConstraints(exact) };
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      const track = kind === "audio" ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
      this.errors[kind] = null;
      this.adopt(kind, track || null);
    } catch (err) {
      this.errors[kind] = err;
      throw err;
    }
  }

  /** Make `track` the current one of its kind, stopping the previous one. */
  adopt(kind, track) {
    const old = this[kind];
    if (old === track) return;
    if (old) {
      old.onended = null;
      old.stop();
      this.preview.removeTrack(old);
    }
    this[kind] = track;
    if (track) {
      if (kind === "audio") track.enabled = this.micOn;
      this.preview.addTrack(track);
      track.onended = () => {
        // Unplugged or revoked: forget it so the UI can offer to start again.
        if (this[kind] !== track) return;
        this.adopt(kind, null);
        this.emit("lost", { kind });
      };
    }
    this.emit("track", { kind, track });
  }

  remember() {
    saveChoice({ mic: this.micId, camera: this.camId, speaker: this.speakerId });
  }

  serial(task) {
    const run = this.queue.then(task);
    this.queue = run.catch(() => {});
    return run;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
