/* The PIN rules of digisign_web/scs/pin_rules.py, run in the "My card" page before anything is sent (D47).
 * Same codes, same order, same arithmetic: the server checks again, and a browser test runs both over the same
 * PINs. policy = {min, max, digitsOnly, complexity} as the server's PinPolicy.as_json() gives it. */
const REPEATED = 1, SEQUENCE = 2, LARGE_STEPS = 4, ONLY_DIGITS = 8, MIXED = 16;
const MAX_AVERAGE_STEP = 4;

/** [{code, field, params}] for every rule `value` breaks (empty: acceptable); `again` is the repeated entry. */
export function checkPin(policy, value, field = "new", again = null) {
  const broken = [];
  const add = (code, params = {}, where = field) => broken.push({ code, field: where, params });
  const chars = Array.from(value);
  const lo = policy.min, hi = policy.max;
  if (lo > hi) add("impossible-length", { min: lo, max: hi });
  else if (chars.length < lo) add("too-short", { min: lo });
  else if (chars.length > hi) add("too-long", { max: hi });
  if (!/^[\x20-\x7e]*$/.test(value)) add("bad-characters");
  const bits = policy.complexity || 0;
  if ((policy.digitsOnly || bits & ONLY_DIGITS) && !/^[0-9]*$/.test(value)) add("not-digits");
  if (chars.length >= 2) {
    const codes = chars.map((ch) => ch.codePointAt(0));
    const steps = codes.slice(1).map((code, i) => code - codes[i]);
    if (bits & REPEATED && new Set(chars).size === 1) add("repeated");
    if (bits & SEQUENCE && (steps.every((s) => s === 1) || steps.every((s) => s === -1))) add("sequence");
    if (bits & LARGE_STEPS && steps.reduce((sum, s) => sum + Math.abs(s), 0) > MAX_AVERAGE_STEP * steps.length) {
      add("large-steps");
    }
  }
  if (bits & MIXED && !(/[a-z]/.test(value) && /[A-Z]/.test(value) && /[0-9]/.test(value))) add("needs-mixed");
  if (again !== null && again !== undefined && again !== value) add("mismatch", {}, "again");
  return broken;
}
