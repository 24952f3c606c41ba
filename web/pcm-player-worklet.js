// Playback on the audio thread: a small jitter buffer of 16 kHz PCM frames, resampled to the
// context's rate by linear interpolation. It starts once `prebufferMs` are queued, and when it
// runs dry it plays silence and starts again at the next frame: a gap is silence, never a stall.
// Each frame fully played is reported to the page ({played: seq}).

const SOURCE_RATE = 16000;

class PcmPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.prebuffer = (SOURCE_RATE * (options.processorOptions?.prebufferMs ?? 300)) / 1000;
    this.step = SOURCE_RATE / sampleRate;
    this.queue = []; // [{seq, samples: Float32Array}]
    this.queued = 0; // samples queued
    this.position = 0; // read position within queue[0]
    this.playing = false;
    this.underruns = 0;
    this.port.onmessage = ({ data }) => {
      const samples = new Float32Array(data.pcm.length);
      for (let i = 0; i < samples.length; i += 1) samples[i] = data.pcm[i] / 0x8000;
      this.queue.push({ seq: data.seq, samples });
      this.queued += samples.length;
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queued >= this.prebuffer) this.playing = true;
    for (let i = 0; i < out.length; i += 1) {
      if (!this.playing || this.queue.length === 0) {
        out[i] = 0;
        continue;
      }
      const { samples } = this.queue[0];
      const index = Math.floor(this.position);
      const frac = this.position - index;
      const next = index + 1 < samples.length ? samples[index + 1] : (this.queue[1]?.samples[0] ?? samples[index]);
      out[i] = samples[index] + (next - samples[index]) * frac;
      this.position += this.step;
      if (this.position >= samples.length) {
        this.position -= samples.length;
        this.queued -= samples.length;
        this.port.postMessage({ played: this.queue.shift().seq });
        if (this.queue.length === 0) {
          this.playing = false; // dry: silence until enough is queued again
          this.underruns += 1;
          this.position = 0;
        }
      }
    }
    for (let c = 1; c < outputs[0].length; c += 1) outputs[0][c].set(out);
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
