// Push delivery's pure parts: which worker gets the next push and how long a
// busy or unreachable worker is left alone (src/push/targets.ts).
import { expect, test } from "bun:test";
import {
  busyBackoffMs,
  failureBackoffMs,
  newTarget,
  nextReadyInMs,
  noteBusy,
  noteDelivered,
  noteFailure,
  pickTarget,
} from "../src/push/targets.ts";

test("round-robin from the cursor over workers with a free call slot", () => {
  const ts = ["a:1", "b:2", "c:3"].map(newTarget);
  expect(pickTarget(ts, 0, 1000, 2)).toBe(0);
  expect(pickTarget(ts, 1, 1000, 2)).toBe(1);
  expect(pickTarget(ts, 5, 1000, 2)).toBe(2);
  ts[1]!.inflight = 2;
  expect(pickTarget(ts, 1, 1000, 2)).toBe(2);
  ts[2]!.inflight = 2;
  ts[0]!.inflight = 2;
  expect(pickTarget(ts, 0, 1000, 2)).toBe(-1);
});

test("a busy worker is retried soon, an unreachable one later; a delivery clears both", () => {
  const [a, b] = ["a:1", "b:2"].map(newTarget) as [ReturnType<typeof newTarget>, ReturnType<typeof newTarget>];
  noteBusy(a, 1000);
  expect(a.notBeforeMs).toBe(1000 + busyBackoffMs(1));
  expect(pickTarget([a, b], 0, 1000, 4)).toBe(1);
  noteFailure(b, 1000);
  expect(pickTarget([a, b], 0, 1000, 4)).toBe(-1);
  expect(nextReadyInMs([a, b], 1000)).toBe(busyBackoffMs(1));
  expect(pickTarget([a, b], 0, 1000 + busyBackoffMs(1), 4)).toBe(0);
  noteDelivered(a);
  expect(a.notBeforeMs).toBe(0);
  expect(nextReadyInMs([a], 5000)).toBe(Infinity);
});

test("back-offs grow with the streak and are capped", () => {
  expect(busyBackoffMs(1)).toBeLessThan(busyBackoffMs(3));
  expect(busyBackoffMs(50)).toBe(500);
  expect(failureBackoffMs(1)).toBeGreaterThan(busyBackoffMs(1));
  expect(failureBackoffMs(50)).toBe(5000);
});
