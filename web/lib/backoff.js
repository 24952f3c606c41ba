// Retry delays, in seconds: exponential backoff with full jitter (a crowd that lost its
// connections together does not come back in the same second), and RATE_LIMIT_EXCEEDED's
// retryAfterSeconds with a little jitter on top.

export const BASE_DELAY = 0.2;
export const MAX_DELAY = 5;

/** Full jitter: a random delay in [0, min(max, base * 2^attempt)). */
export function backoffDelay(attempt, { base = BASE_DELAY, max = MAX_DELAY, random = Math.random } = {}) {
  return random() * Math.min(max, base * 2 ** attempt);
}

/** What to wait after RATE_LIMIT_EXCEEDED: the server's retryAfterSeconds, plus up to a quarter more. */
export function retryAfterDelay(retryAfterSeconds, { random = Math.random } = {}) {
  const seconds = Number(retryAfterSeconds) > 0 ? Number(retryAfterSeconds) : 1;
  return seconds * (1 + random() / 4);
}
