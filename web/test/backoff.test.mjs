import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, MAX_DELAY, retryAfterDelay } from "../lib/backoff.js";

test("backoff: full jitter below an exponential ceiling, capped", () => {
  assert.equal(backoffDelay(0, { random: () => 0.999999 }) < 0.2, true);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 0.5 * 0.2 * 8);
  assert.equal(backoffDelay(30, { random: () => 0.999999 }) < MAX_DELAY, true);
  assert.equal(backoffDelay(5, { random: () => 0 }), 0);
});

test("backoff: retryAfterSeconds is honoured, with at most a quarter more", () => {
  assert.equal(retryAfterDelay(8, { random: () => 0 }), 8);
  assert.equal(retryAfterDelay(8, { random: () => 0.999 }) < 10, true);
  assert.equal(retryAfterDelay(undefined, { random: () => 0 }), 1);
});
