// Pure scheduler rules: definition validation and hashing, which slot fires
// next (interval and crontab), missed slots not caught up, a changed definition
// running at once, the claim rule replicas rely on, and the activation a slot
// produces (deterministic id, trace propagation off).
import { describe, expect, test } from "bun:test";
import { PROPAGATE_TRACES_HEADER } from "../src/activation/headers.ts";
import { decodeParameters } from "../src/activation/parameters.ts";
import {
  buildScheduledActivation,
  claimable,
  normalizeSchedules,
  planNext,
  SCHEDULE_HEADER,
  scheduledActivationId,
  type Schedule,
  ScheduleDefinitionError,
} from "../src/scheduler/index.ts";
import { OnAttemptsExceeded } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";

const at = (iso: string) => Date.parse(iso);
const one = (def: Record<string, unknown>): Schedule => normalizeSchedules({ s: def })[0]!;

describe("definitions", () => {
  test("interval and crontab schedules normalise with defaults", () => {
    const [a, b] = normalizeSchedules({
      a: { task: "ns:tick", intervalSec: 5 },
      b: { task: "reports:nightly.run", crontab: " 0 3 * * * ", kwargs: { full: true }, headers: { team: "x" } },
    });
    expect(a).toMatchObject({
      key: "a",
      namespace: "ns",
      taskname: "tick",
      trigger: { kind: "interval", seconds: 5 },
      args: [],
      kwargs: {},
    });
    expect(b).toMatchObject({
      namespace: "reports",
      taskname: "nightly.run",
      trigger: { kind: "crontab", expression: "0 3 * * *", tz: "UTC" },
    });
  });

  test.each([
    [{ task: "ns:t", intervalSec: 0 }, /intervalSec/],
    [{ task: "ns:t", intervalSec: 1.5 }, /whole seconds/],
    [{ task: "ns:t" }, /exactly one of intervalSec or crontab/],
    [{ task: "ns:t", intervalSec: 5, crontab: "* * * * *" }, /exactly one/],
    [{ task: "no-namespace", intervalSec: 5 }, /namespace:taskname/],
    [{ task: "ns:t", crontab: "0 * * * * *" }, /6 fields; expected 5/],
    [{ task: "ns:t", crontab: "@secondly" }, /unsupported crontab alias/],
    [{ task: "ns:t", crontab: "61 * * * *" }, /crontab/],
    [{ task: "ns:t", intervalSec: 5, tz: "UTC" }, /tz: only applies to crontab/],
    [{ task: "ns:t", intervalSec: 5, surprise: 1 }, /surprise|Unrecognized/],
  ])("rejects %j", (def, message) => {
    expect(() => one(def)).toThrow(ScheduleDefinitionError);
    expect(() => one(def)).toThrow(message);
  });

  test("the hash follows the definition, not key order or the schedule's name", () => {
    const base = one({ task: "ns:t", intervalSec: 5, kwargs: { a: 1, b: 2 } });
    expect(one({ kwargs: { b: 2, a: 1 }, intervalSec: 5, task: "ns:t" }).hash).toBe(base.hash);
    expect(normalizeSchedules({ other: { task: "ns:t", intervalSec: 5, kwargs: { a: 1, b: 2 } } })[0]!.hash).toBe(
      base.hash,
    );
    expect(one({ task: "ns:t", intervalSec: 6, kwargs: { a: 1, b: 2 } }).hash).not.toBe(base.hash);
    expect(one({ task: "ns:t", intervalSec: 5, kwargs: { a: 1, b: 3 } }).hash).not.toBe(base.hash);
    expect(one({ task: "ns:t", intervalSec: 5, kwargs: { a: 1, b: 2 }, args: [new Uint8Array([1])] }).hash).not.toBe(
      one({ task: "ns:t", intervalSec: 5, kwargs: { a: 1, b: 2 }, args: [new Uint8Array([2])] }).hash,
    );
  });
});

describe("interval slots", () => {
  const every10 = one({ task: "ns:t", intervalSec: 10 });
  const t0 = at("2024-03-01T12:00:00.000Z");

  test("a schedule that never ran runs now (floored to the second)", () => {
    expect(planNext(every10.trigger, every10.hash, null, t0 + 1_234)).toEqual({ slotMs: t0 + 1_000, reason: "first" });
  });

  test("the next slot is last + interval, anchored to the last run", () => {
    const record = { hash: every10.hash, lastSlotMs: t0 + 3_000 };
    expect(planNext(every10.trigger, every10.hash, record, t0 + 3_001)).toEqual({ slotMs: t0 + 13_000, reason: "due" });
    // Planned exactly on a slot: that slot is still the next one.
    expect(planNext(every10.trigger, every10.hash, record, t0 + 13_000).slotMs).toBe(t0 + 13_000);
  });

  test("missed slots are not caught up: the next slot is the first at or after now", () => {
    const record = { hash: every10.hash, lastSlotMs: t0 };
    // Down for 95 s: slots t0+10 .. t0+90 were missed; next is t0+100, not t0+10.
    expect(planNext(every10.trigger, every10.hash, record, t0 + 95_000)).toEqual({
      slotMs: t0 + 100_000,
      reason: "due",
    });
  });

  test("a changed definition runs at the next opportunity", () => {
    const record = { hash: "an-older-definition", lastSlotMs: t0 };
    expect(planNext(every10.trigger, every10.hash, record, t0 + 2_500)).toEqual({
      slotMs: t0 + 2_000,
      reason: "changed",
    });
  });
});

describe("crontab slots", () => {
  test("every five minutes: next slot strictly after the last, at or after now", () => {
    const s = one({ task: "ns:t", crontab: "*/5 * * * *" });
    const record = { hash: s.hash, lastSlotMs: at("2024-03-01T12:05:00Z") };
    expect(planNext(s.trigger, s.hash, record, at("2024-03-01T12:05:00.200Z")).slotMs).toBe(at("2024-03-01T12:10:00Z"));
    expect(planNext(s.trigger, s.hash, record, at("2024-03-01T12:07:30Z")).slotMs).toBe(at("2024-03-01T12:10:00Z"));
    // Exactly on a slot that has not run yet.
    expect(planNext(s.trigger, s.hash, record, at("2024-03-01T12:10:00Z")).slotMs).toBe(at("2024-03-01T12:10:00Z"));
  });

  test("missed crontab slots are not caught up", () => {
    const s = one({ task: "ns:t", crontab: "0 * * * *" });
    const record = { hash: s.hash, lastSlotMs: at("2024-03-01T01:00:00Z") };
    const plan = planNext(s.trigger, s.hash, record, at("2024-03-01T05:30:00Z"));
    expect(plan).toEqual({ slotMs: at("2024-03-01T06:00:00Z"), reason: "due" });
  });

  test("field order is minute hour day-of-month month day-of-week", () => {
    // 09:30 on Mondays; 2024-03-03 is a Sunday.
    const s = one({ task: "ns:t", crontab: "30 9 * * 1" });
    const record = { hash: s.hash, lastSlotMs: at("2024-02-26T09:30:00Z") };
    expect(planNext(s.trigger, s.hash, record, at("2024-03-03T10:00:00Z")).slotMs).toBe(at("2024-03-04T09:30:00Z"));
    // 00:00 on the 15th of June.
    const y = one({ task: "ns:t", crontab: "0 0 15 6 *" });
    expect(planNext(y.trigger, y.hash, { hash: y.hash, lastSlotMs: 0 }, at("2024-03-03T10:00:00Z")).slotMs).toBe(
      at("2024-06-15T00:00:00Z"),
    );
  });

  test("a time zone shifts the slots", () => {
    const s = one({ task: "ns:t", crontab: "0 12 * * *", tz: "Europe/Berlin" });
    expect(planNext(s.trigger, s.hash, { hash: s.hash, lastSlotMs: 0 }, at("2024-01-10T00:00:00Z")).slotMs).toBe(
      at("2024-01-10T11:00:00Z"),
    );
  });
});

describe("claim rule", () => {
  const h = "h1";
  test("a due slot is claimable only while the stored slot is older and the hash the same", () => {
    const plan = { slotMs: 2_000, reason: "due" as const };
    expect(claimable(plan, h, { hash: h, lastSlotMs: 1_000 })).toBe(true);
    expect(claimable(plan, h, { hash: h, lastSlotMs: 2_000 })).toBe(false);
    expect(claimable(plan, h, { hash: "h0", lastSlotMs: 1_000 })).toBe(false);
    expect(claimable(plan, h, null)).toBe(false);
  });

  test("a first or changed run is claimed once: by whoever first stores the new hash", () => {
    expect(claimable({ slotMs: 5_000, reason: "first" }, h, null)).toBe(true);
    expect(claimable({ slotMs: 5_000, reason: "changed" }, h, { hash: "h0", lastSlotMs: 1_000 })).toBe(true);
    // The other replica planned the same change a second later; the first claim already wrote h1.
    expect(claimable({ slotMs: 6_000, reason: "changed" }, h, { hash: h, lastSlotMs: 5_000 })).toBe(false);
  });
});

describe("scheduled activation", () => {
  const s = one({
    task: "ns:tick",
    intervalSec: 5,
    args: [1, "a"],
    kwargs: { org_id: 7 },
    headers: { team: "core", n: 3 },
  });

  test("turns trace propagation off, names its schedule and carries the parameters", () => {
    const { activation } = buildScheduledActivation(s, 10_000, 10_050);
    expect(activation.headers[PROPAGATE_TRACES_HEADER]).toBe("False");
    expect(activation.headers[SCHEDULE_HEADER]).toBe("s");
    expect(activation.headers.team).toBe("core");
    expect(activation.headers.n).toBe("3");
    expect(activation).toMatchObject({ namespace: "ns", taskname: "tick", application: "default" });
    expect(decodeParameters(activation.parametersBytes, activation.headers["compression-type"])).toEqual({
      args: [1, "a"],
      kwargs: { org_id: 7 },
    });
    expect(activation.retryState).toMatchObject({
      attempts: 0,
      maxAttempts: 1,
      onAttemptsExceeded: OnAttemptsExceeded.DISCARD,
    });
    expect(activation.processingDeadlineDuration).toBe(10n);
  });

  test("the id is UUID4-shaped and the same for the same schedule, definition and slot", () => {
    const id = scheduledActivationId(s, 10_000);
    expect(id).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
    expect(buildScheduledActivation(s, 10_000, 99_999).activation.id).toBe(id);
    expect(scheduledActivationId(s, 15_000)).not.toBe(id);
    expect(scheduledActivationId({ ...s, hash: "other" }, 10_000)).not.toBe(id);
  });

  test("a registered task's template (retry policy, deadline) shapes the activation", () => {
    const lookup = (namespace: string, taskname: string) => ({
      application: "acme",
      namespace,
      taskname,
      retry: { times: 3, on: [], ignore: [], onAttemptsExceeded: "deadletter" as const, delaySec: 2 },
      expiresSec: 60,
      processingDeadlineS: 30,
      atMostOnce: false,
      compression: "auto" as const,
    });
    const { activation } = buildScheduledActivation(s, 10_000, 10_050, lookup);
    expect(activation.application).toBe("acme");
    expect(activation.retryState).toMatchObject({
      maxAttempts: 3,
      onAttemptsExceeded: OnAttemptsExceeded.DEADLETTER,
      delayOnRetry: 2n,
    });
    expect(activation.processingDeadlineDuration).toBe(30n);
    expect(activation.expires).toBe(60n);
  });
});
