/*
 * A soft two-tone ring made with WebAudio (no audio files), repeated until stopped.
 * Browsers may keep audio suspended until the page has been clicked; then it stays silent.
 */

let ctx = null;

function context() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  if (!ctx) ctx = new Ctx();
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  return ctx;
}

function chirp(audio, start) {
  for (const [offset, freq] of [
    [0, 660],
    [0.18, 880],
  ]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.type = "sine";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0, start + offset);
    gain.gain.linearRampToValueAtTime(0.12, start + offset + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.35);
    osc.connect(gain).connect(audio.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.4);
  }
}

/** Start ringing; returns stop(). */
export function startRingtone() {
  const audio = context();
  if (!audio) return () => {};
  const ring = () => {
    if (audio.state === "running") chirp(audio, audio.currentTime + 0.02);
  };
  ring();
  const timer = setInterval(ring, 2200);
  return () => clearInterval(timer);
}
