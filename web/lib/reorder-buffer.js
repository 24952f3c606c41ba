// Delivers each audio `seq` once and in order, whatever order and however often frames arrive.
// The browser twin of broadcast_client/reorder.py: a missing frame holds later ones back until it
// arrives, until skipGap() (the owner's timeout), or until more than `capacity` frames wait; then
// the gap is recorded in stats.gaps, never hidden. The first frame seen sets where delivery starts;
// with holdStart, frames are held until begin() and delivery starts at the lowest one held, so a
// first frame overtaken by the next one (concurrent deliveries) is not dropped as old.

export class ReorderBuffer {
  constructor(capacity = 512, firstSeq = null, { holdStart = false } = {}) {
    if (!(capacity >= 1)) throw new RangeError("capacity must be at least 1");
    this.capacity = capacity;
    this.nextSeq = firstSeq;
    this.holding = holdStart && firstSeq === null;
    this.pending = new Map();
    this.stats = { delivered: 0, duplicates: 0, reordered: 0, gaps: [] };
  }

  /** End the hold: delivery starts at the lowest frame held; returns what that releases. */
  begin() {
    this.holding = false;
    if (this.nextSeq !== null || this.pending.size === 0) return [];
    this.nextSeq = Math.min(...this.pending.keys());
    for (const seq of this.pending.keys()) if (seq !== this.nextSeq) this.stats.reordered += 1;
    return this.#drain();
  }

  /** Accept one arrival; returns what can now be delivered, in order, as [{seq, item}]. */
  push(seq, item) {
    if (this.nextSeq === null && this.holding) {
      if (this.pending.has(seq)) this.stats.duplicates += 1;
      this.pending.set(seq, item);
      return this.pending.size > this.capacity ? this.begin() : [];
    }
    if (this.nextSeq === null) this.nextSeq = seq;
    if (seq < this.nextSeq || this.pending.has(seq)) {
      this.stats.duplicates += 1;
      return [];
    }
    if (seq !== this.nextSeq) this.stats.reordered += 1;
    this.pending.set(seq, item);
    let ready = this.#drain();
    while (this.pending.size > this.capacity) ready = ready.concat(this.skipGap());
    return ready;
  }

  /** Give up on the frames missing before the oldest waiting one; returns what that releases. */
  skipGap() {
    if (this.pending.size === 0 || this.nextSeq === null) return [];
    const oldest = Math.min(...this.pending.keys());
    if (oldest > this.nextSeq) {
      this.stats.gaps.push([this.nextSeq, oldest - 1]);
      this.nextSeq = oldest;
    }
    return this.#drain();
  }

  /** Frames held back behind a gap. */
  get waiting() {
    return this.pending.size;
  }

  /** Frames given up on (the sum of the gaps' lengths). */
  get lost() {
    return this.stats.gaps.reduce((sum, [first, last]) => sum + last - first + 1, 0);
  }

  #drain() {
    const ready = [];
    while (this.pending.has(this.nextSeq)) {
      ready.push({ seq: this.nextSeq, item: this.pending.get(this.nextSeq) });
      this.pending.delete(this.nextSeq);
      this.nextSeq += 1;
    }
    this.stats.delivered += ready.length;
    return ready;
  }
}
