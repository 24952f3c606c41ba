// Microphone capture on the audio thread: resample whatever rate the context runs at to
// 16 kHz, convert to signed 16-bit PCM, and post frames of `frameMs` (at most 500 ms) to the
// page, with the frame's level (RMS, 0..1) for the meter. pcm_s16le/16000/1 (PROTOCOL.md).

const TARGET_RATE = 16000;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = Math.min(500, options.processorOptions?.frameMs ?? 200);
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.frame = new Int16Array((TARGET_RATE * frameMs) / 1000);
    this.filled = 0;
    this.position = 0; // where the next output sample falls, in this block's input samples
    this.window = []; // input samples not yet consumed (for the averaging low-pass)
    this.sumSquares = 0;
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (!channel) return true;
    for (const sample of channel) this.window.push(sample);
    // Each output sample is the mean of the input samples it stands for: a box low-pass that
    // keeps 48 kHz (or 44.1 kHz) speech from aliasing into the 16 kHz band.
    while (this.position + this.step <= this.window.length) {
      const from = Math.floor(this.position);
      const to = Math.floor(this.position + this.step);
      let sum = 0;
      for (let i = from; i < to; i += 1) sum += this.window[i];
      const value = Math.max(-1, Math.min(1, sum / Math.max(1, to - from)));
      this.sumSquares += value * value;
      this.frame[this.filled++] = value < 0 ? value * 0x8000 : value * 0x7fff;
      this.position += this.step;
      if (this.filled === this.frame.length) this.#post();
    }
    const used = Math.floor(this.position);
    this.window.splice(0, used);
    this.position -= used;
    return true;
  }

  #post() {
    const level = Math.sqrt(this.sumSquares / this.frame.length);
    const pcm = this.frame.slice();
    this.port.postMessage({ pcm, level }, [pcm.buffer]);
    this.filled = 0;
    this.sumSquares = 0;
  }
}

registerProcessor("capture-processor", CaptureProcessor);
