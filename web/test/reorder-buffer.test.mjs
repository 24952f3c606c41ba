import assert from "node:assert/strict";
import { test } from "node:test";

import { ReorderBuffer } from "../lib/reorder-buffer.js";

const seqs = (ready) => ready.map((r) => r.seq);

test("reorder buffer: out of order and duplicates are delivered once, in order", () => {
  const buffer = new ReorderBuffer(8);
  assert.deepEqual(seqs(buffer.push(0, "a")), [0]);
  assert.deepEqual(seqs(buffer.push(2, "c")), []);
  assert.deepEqual(seqs(buffer.push(1, "b")), [1, 2]);
  assert.deepEqual(seqs(buffer.push(1, "b")), []);
  assert.equal(buffer.stats.duplicates, 1);
  assert.equal(buffer.stats.reordered, 1);
  assert.equal(buffer.stats.delivered, 3);
});

test("reorder buffer: a gap is given up on only when asked, and recorded", () => {
  const buffer = new ReorderBuffer(8);
  buffer.push(10, "x");
  assert.deepEqual(seqs(buffer.push(13, "y")), []);
  assert.equal(buffer.waiting, 1);
  assert.deepEqual(seqs(buffer.skipGap()), [13]);
  assert.deepEqual(buffer.stats.gaps, [[11, 12]]);
  assert.equal(buffer.lost, 2);
  assert.deepEqual(seqs(buffer.push(12, "late")), []); // too late: counted as a duplicate, never delivered twice
});

test("reorder buffer: more than capacity waiting forces the gap", () => {
  const buffer = new ReorderBuffer(2);
  buffer.push(0, 0);
  buffer.push(2, 2);
  buffer.push(3, 3);
  assert.deepEqual(seqs(buffer.push(4, 4)), [2, 3, 4]);
  assert.deepEqual(buffer.stats.gaps, [[1, 1]]);
});

test("reorder buffer: any arrival order delivers every seq exactly once (random permutations)", () => {
  for (let round = 0; round < 200; round += 1) {
    const order = [...Array(40).keys()];
    for (let i = order.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const arrivals = order.flatMap((seq) => (Math.random() < 0.3 ? [seq, seq] : [seq]));
    const buffer = new ReorderBuffer(64, 0);
    const delivered = arrivals.flatMap((seq) => seqs(buffer.push(seq, seq)));
    assert.deepEqual(delivered, [...Array(40).keys()]);
  }
});

test("reorder buffer: with holdStart, playing starts at the lowest frame held", () => {
  // The second frame overtakes the first (concurrent deliveries): held, the first is not dropped.
  const buffer = new ReorderBuffer(8, null, { holdStart: true });
  assert.deepEqual(seqs(buffer.push(8, "b")), []);
  assert.deepEqual(seqs(buffer.push(7, "a")), []);
  assert.deepEqual(seqs(buffer.push(8, "b")), []);
  assert.deepEqual(seqs(buffer.begin()), [7, 8]);
  assert.equal(buffer.stats.duplicates, 1);
  assert.equal(buffer.lost, 0);
  assert.deepEqual(seqs(buffer.push(9, "c")), [9]);
  assert.deepEqual(seqs(buffer.begin()), []);
});
