/*
 * Audio levels with WebAudio: a microphone meter (requestAnimationFrame) and a speaking
 * detector for call tiles. One shared AudioContext; browsers start it suspended until the
 * page gets a click or key press, so unlockAudio() is called from those.
 */

let context = null;

/** The shared AudioContext (created on first use), resumed when possible. */
export function audioContext() {
  if (!context) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    context = new Ctx();
  }
  if (context.state === "suspended") context.resume().catch(() => {});
  return context;
}

/** Resume audio on the first user gesture (autoplay policies). */
export function unlockAudio() {
  audioContext();
}

for (const type of ["pointerdown", "keydown"]) window.addEventListener(type, unlockAudio, { capture: true });

/** An analyser on one audio track: read() → 0..1 loudness (dB scaled). */
function analyse(track) {
  const ctx = audioContext();
  if (!ctx || !track) return null;
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  analyser.smoothingTimeConstant = 0.3;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  return {
    read() {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const v of samples) sum += v * v;
      const rms = Math.sqrt(sum / samples.length);
      const db = 20 * Math.log10(rms + 1e-9);
      return Math.min(1, Math.max(0, (db + 65) / 50)); // -65 dB → 0, -15 dB → 1
    },
    disconnect() {
      source.disconnect();
    },
  };
}

/**
 * Live level of a track, reported every animation frame to onLevel(0..1) with a quick
 * attack and slow release. setTrack() follows device switches; stop() ends it.
 */
export class LevelMeter {
  constructor(onLevel) {
    this.onLevel = onLevel;
    this.node = null;
    this.level = 0;
    this.frame = 0;
    this.tick = () => {
      const raw = this.node ? this.node.read() : 0;
      this.level = raw > this.level ? raw : this.level * 0.85 + raw * 0.15;
      this.onLevel(this.level);
      this.frame = requestAnimationFrame(this.tick);
    };
  }

  setTrack(track) {
    if (this.node) this.node.disconnect();
    this.node = track ? analyse(track) : null;
    if (!this.frame) this.frame = requestAnimationFrame(this.tick);
  }

  stop() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.node) this.node.disconnect();
    this.node = null;
    this.onLevel(0);
  }
}

/**
 * Who is speaking: watch(key, track) per participant; onChange(key, speaking) fires on
 * changes, with hysteresis so the highlight does not flicker between words.
 */
export class SpeakingDetector {
  constructor(onChange) {
    this.onChange = onChange;
    this.watched = new Map(); // key → {node, track, speaking, quietSince}
    this.timer = setInterval(() => this.poll(), 120);
  }

  watch(key, track) {
    const current = this.watched.get(key);
    if (current && current.track === track) return;
    this.unwatch(key);
    const node = track ? analyse(track) : null;
    if (node) this.watched.set(key, { node, track, speaking: false, quietSince: 0 });
  }

  unwatch(key) {
    const entry = this.watched.get(key);
    if (!entry) return;
    entry.node.disconnect();
    this.watched.delete(key);
    if (entry.speaking) this.onChange(key, false);
  }

  poll() {
    const now = Date.now();
    for (const [key, entry] of this.watched) {
      const loud = entry.track.enabled && entry.track.readyState === "live" && entry.node.read() > 0.32;
      if (loud) entry.quietSince = now;
      const speaking = loud || (entry.speaking && now - entry.quietSince < 700);
      if (speaking !== entry.speaking) {
        entry.speaking = speaking;
        this.onChange(key, speaking);
      }
    }
  }

  stop() {
    clearInterval(this.timer);
    for (const key of [...this.watched.keys()]) this.unwatch(key);
  }
}
