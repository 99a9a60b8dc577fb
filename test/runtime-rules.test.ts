// The runtime configuration's pure decisions: file parsing (valid and
// malformed), kill switch matching by task name, namespace and argument values
// (positional or keyword, msgpack and zstd, fail open), and demotion lookups.
import { describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { encode } from "@msgpack/msgpack";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import {
  decideForBytes,
  demotedTopic,
  InvalidRuntimeConfig,
  killDecision,
  parseRuntimeConfig,
  type KillDecision,
} from "../src/runtime/index.ts";
import { activationParameters, UndecodableParameters } from "../src/activation/parameters.ts";

function activationBytes(opts: {
  taskname: string;
  namespace?: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  zstd?: boolean;
  raw?: Uint8Array;
}): Uint8Array {
  let params = opts.raw ?? encode({ args: opts.args ?? [], kwargs: opts.kwargs ?? {} }, { useBigInt64: true });
  if (opts.zstd) params = Bun.zstdCompressSync(params);
  return toBinary(
    TaskActivationSchema,
    create(TaskActivationSchema, {
      id: crypto.randomUUID(),
      namespace: opts.namespace ?? "ns",
      taskname: opts.taskname,
      application: "app",
      headers: opts.zstd ? { "compression-type": "zstd" } : {},
      parametersBytes: params,
    }),
  );
}

/** "kill", "keep" or "undecodable" (kept because the arguments could not be read). */
const verdict = (d: KillDecision) => (d.kill ? "kill" : d.undecodable ? "undecodable" : "keep");
const decide = (yaml: string, a: Parameters<typeof activationBytes>[0]) =>
  verdict(
    decideForBytes(parseRuntimeConfig(yaml), {
      taskname: a.taskname,
      namespace: a.namespace ?? "ns",
      activation: activationBytes(a),
    }),
  );

describe("parseRuntimeConfig", () => {
  test("empty file means no rules", () => {
    const rules = parseRuntimeConfig("");
    expect(rules.killByTaskname.size).toBe(0);
    expect(rules.demoted.size).toBe(0);
  });

  test("reads kill rules, the reference broker's drop list and demotions", () => {
    const rules = parseRuntimeConfig(`
kill_switch:
  - taskname: a.task
  - taskname: a.task
    args: [{ keyword: org, values: [1] }]
  - taskname: b.task
drop_task_killswitch: [c.task]
demoted_namespaces:
  slow.ns: taskworker-long
`);
    expect([...rules.killByTaskname.keys()].sort()).toEqual(["a.task", "b.task", "c.task"]);
    expect(rules.killByTaskname.get("a.task")!.length).toBe(2);
    expect(demotedTopic(rules, "slow.ns")).toBe("taskworker-long");
    expect(demotedTopic(rules, "fast.ns")).toBeNull();
  });

  test("demoted namespaces as a list take demoted_topic, else the long topic", () => {
    const rules = parseRuntimeConfig("demoted_namespaces: [x, y]\ndemoted_topic: long\n");
    expect(demotedTopic(rules, "x")).toBe("long");
    expect(demotedTopic(rules, "y")).toBe("long");
    const byDefault = parseRuntimeConfig("demoted_namespaces: [x]\n");
    expect(demotedTopic(byDefault, "x")).toBe("taskworker-long");
    expect(demotedTopic(byDefault, "x", "my-long")).toBe("my-long");
    expect(byDefault.demotedCluster).toBeNull();
  });

  test.each([
    ["kill_switch: [{ taskname: a, args: [{ values: [1] }] }]", "position or a keyword"],
    ["kill_switch: [{ taskname: a, args: [{ position: 0, values: [] }] }]", "kill_switch.0.args.0.values"],
    ["kill_switch: [{ tasknme: a }]", "kill_switch.0"],
    ["kill_switch: {a: 1", "YAML"],
    ["demoted_namespaces: 5", "demoted_namespaces"],
    ["droop_task_killswitch: [a]", "did you mean drop_task_killswitch?"],
    [
      "drop_task_killswitch: [{ name: a, select_args: { 0: 1 } }]",
      'drop_task_killswitch.0: unknown key "select_args" (did you mean select_arg?)',
    ],
    ["drop_task_killswitch: [{ name: a, select_arg: { first: 1 } }]", "drop_task_killswitch.0.select_arg"],
    ["drop_task_killswitch: [{ select_kwarg: { a: 1 } }]", "drop_task_killswitch.0.name"],
    ["drop_task_killswitch: [7]", "drop_task_killswitch.0"],
    ["unknown_key: 1", "unknown_key"],
    ["- just\n- a list", "(top level)"],
  ])("rejects %p naming the problem", (yaml, fragment) => {
    let error: unknown;
    try {
      parseRuntimeConfig(yaml);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InvalidRuntimeConfig);
    expect((error as Error).message).toContain(fragment);
    expect((error as Error).message).not.toContain("\n");
  });
});

describe("kill switch", () => {
  test("by task name alone drops every activation of that task and nothing else", () => {
    const yaml = "kill_switch: [{ taskname: doomed }]";
    expect(decide(yaml, { taskname: "doomed" })).toBe("kill");
    expect(decide(yaml, { taskname: "doomed", raw: new Uint8Array([0xc1]) })).toBe("kill");
    expect(decide(yaml, { taskname: "other" })).toBe("keep");
  });

  test("namespace restricts a rule", () => {
    const yaml = "kill_switch: [{ taskname: t, namespace: a }]";
    expect(decide(yaml, { taskname: "t", namespace: "a" })).toBe("kill");
    expect(decide(yaml, { taskname: "t", namespace: "b" })).toBe("keep");
  });

  const byArgs = `
kill_switch:
  - taskname: t
    args:
      - { position: 0, keyword: project_id, values: [42, 43] }
      - { keyword: kind, values: ["error"] }
`;
  test("argument conditions: positional or keyword, any value, all conditions", () => {
    expect(decide(byArgs, { taskname: "t", args: [42], kwargs: { kind: "error" } })).toBe("kill");
    expect(decide(byArgs, { taskname: "t", kwargs: { project_id: 43, kind: "error" } })).toBe("kill");
    expect(decide(byArgs, { taskname: "t", args: [44], kwargs: { kind: "error" } })).toBe("keep");
    expect(decide(byArgs, { taskname: "t", args: [42], kwargs: { kind: "warning" } })).toBe("keep");
    expect(decide(byArgs, { taskname: "t", args: [42] })).toBe("keep");
    expect(decide(byArgs, { taskname: "t", args: ["42"], kwargs: { kind: "error" } })).toBe("keep");
  });

  test("zstd-compressed parameters are decoded", () => {
    expect(decide(byArgs, { taskname: "t", args: [42], kwargs: { kind: "error" }, zstd: true })).toBe("kill");
  });

  test("msgpack bin compares as text", () => {
    const yaml = "kill_switch: [{ taskname: t, args: [{ position: 0, values: [payload] }] }]";
    expect(decide(yaml, { taskname: "t", args: [new TextEncoder().encode("payload")] })).toBe("kill");
    expect(decide(yaml, { taskname: "t", args: [new Uint8Array([0xff, 0xfe])] })).toBe("keep");
  });

  test("fails open when parameters cannot be decoded", () => {
    expect(decide(byArgs, { taskname: "t", raw: new Uint8Array([0xc1, 0x00]) })).toBe("undecodable");
    // claims zstd but is not
    expect(
      verdict(
        decideForBytes(parseRuntimeConfig(byArgs), {
          taskname: "t",
          namespace: "ns",
          activation: toBinary(
            TaskActivationSchema,
            create(TaskActivationSchema, {
              taskname: "t",
              headers: { "compression-type": "zstd" },
              parametersBytes: encode({ args: [42], kwargs: { kind: "error" } }),
            }),
          ),
        }),
      ),
    ).toBe("undecodable");
  });

  test("parameters are decoded only when a rule needs them", () => {
    const rules = parseRuntimeConfig(
      "kill_switch: [{ taskname: t }, { taskname: u, args: [{ position: 0, values: [1] }] }]",
    );
    let calls = 0;
    const readers = {
      conditions: () => {
        calls++;
        return { args: [1], kwargs: {} };
      },
      selector: () => {
        throw new Error("no selector rule here");
      },
    };
    expect(verdict(killDecision(rules, { taskname: "t", namespace: "n" }, readers))).toBe("kill");
    expect(verdict(killDecision(rules, { taskname: "v", namespace: "n" }, readers))).toBe("keep");
    expect(calls).toBe(0);
    expect(verdict(killDecision(rules, { taskname: "u", namespace: "n" }, readers))).toBe("kill");
    expect(calls).toBe(1);
  });
});

describe("activationParameters", () => {
  test("falls back to the deprecated JSON parameters", () => {
    expect(
      activationParameters({
        headers: {},
        parameters: '{"args":[1],"kwargs":{"a":2}}',
        parametersBytes: new Uint8Array(),
      }),
    ).toEqual({
      args: [1],
      kwargs: { a: 2 },
    });
  });
  test("rejects a msgpack value that is not {args, kwargs}", () => {
    expect(() => activationParameters({ headers: {}, parameters: "", parametersBytes: encode([1, 2]) })).toThrow(
      UndecodableParameters,
    );
  });
});

describe("the reference broker's format", () => {
  test("its files parse unchanged: bare names, selectors, demotion with topic and cluster", () => {
    const rules = parseRuntimeConfig(`
drop_task_killswitch:
  - test:do_nothing
  - name: sentry.tasks.unmerge
    select_arg: {0: 123}
    select_kwarg: {project_id: 123}
demoted_namespaces:
  - bad_namespace
demoted_topic_cluster: kafka:9092
demoted_topic: taskworker-demoted-topic
`);
    expect(rules.killByTaskname.get("test:do_nothing")).toEqual([{ kind: "name", taskname: "test:do_nothing" }]);
    expect(rules.killByTaskname.get("sentry.tasks.unmerge")![0]!.kind).toBe("selector");
    expect(demotedTopic(rules, "bad_namespace")).toBe("taskworker-demoted-topic");
    expect(rules.demotedCluster).toBe("kafka:9092");
    expect(rules.notes).toEqual([]);
    const empty = parseRuntimeConfig("drop_task_killswitch: []\ndemoted_namespaces: []\n");
    expect(empty.killByTaskname.size).toBe(0);
    expect(empty.demoted.size).toBe(0);
  });

  const selector = `
drop_task_killswitch:
  - name: sentry.tasks.unmerge
    select_arg: {0: 123}
    select_kwarg: {project_id: 123}
`;
  const unmerge = (args: unknown[], kwargs: Record<string, unknown> = {}) =>
    decide(selector, { taskname: "sentry.tasks.unmerge", args, kwargs });

  test("a bare name drops every activation of the task, arguments unread", () => {
    const yaml = "drop_task_killswitch: [doomed]";
    expect(decide(yaml, { taskname: "doomed", raw: new Uint8Array([0xc1]) })).toBe("kill");
    expect(decide(yaml, { taskname: "spared" })).toBe("keep");
  });

  test("any condition suffices: called positionally or by keyword", () => {
    expect(unmerge([123])).toBe("kill");
    expect(unmerge([], { project_id: 123 })).toBe("kill");
    expect(unmerge([1], { project_id: 2 })).toBe("keep");
    expect(unmerge([], { organization_id: 123 })).toBe("keep");
    expect(decide(selector, { taskname: "sentry.tasks.other", args: [123] })).toBe("keep");
  });

  test("an index past the arguments does not match", () => {
    expect(decide("drop_task_killswitch: [{ name: t, select_arg: { 5: 123 } }]", { taskname: "t", args: [123] })).toBe(
      "keep",
    );
  });

  test("values compare by kind and value: wide and negative integers, floats, strings, lists", () => {
    const yaml = `
drop_task_killswitch:
  - name: t
    select_kwarg: { big: 10000000000, delta: -5, ratio: 1.5, label: "123", ids: [1, 2] }
`;
    const t = (kwargs: Record<string, unknown>) => decide(yaml, { taskname: "t", kwargs });
    // (bigint so the encoder writes uint64, as Python's msgpack does for an int.)
    expect(t({ big: 10_000_000_000n })).toBe("kill");
    expect(t({ big: 2n ** 40n })).toBe("keep");
    expect(t({ delta: -5 })).toBe("kill");
    expect(t({ ratio: 1.5 })).toBe("kill");
    expect(t({ label: "123" })).toBe("kill");
    expect(t({ label: 123 })).toBe("keep");
    expect(t({ ids: [1, 2] })).toBe("kill");
    expect(t({ ids: [1, 2, 3] })).toBe("keep");
  });

  test("an integer is not the float of the same value, either way", () => {
    // msgpack encodes 2.0 from Python as float 64; @msgpack/msgpack would write 2 as an integer.
    const float64 = (v: number) => {
      const b = new Uint8Array(9);
      b[0] = 0xcb;
      new DataView(b.buffer).setFloat64(1, v);
      return b;
    };
    const params = (value: Uint8Array) => {
      // {"args": [value], "kwargs": {}} written by hand around the float.
      const head = encode({ args: [0], kwargs: {} });
      const at = head.indexOf(0x00, head.indexOf(0x91)); // the fixint 0 inside args
      return new Uint8Array([...head.slice(0, at), ...value, ...head.slice(at + 1)]);
    };
    expect(
      decide("drop_task_killswitch: [{ name: t, select_arg: { 0: 2 } }]", { taskname: "t", raw: params(float64(2)) }),
    ).toBe("keep");
    expect(
      decide("drop_task_killswitch: [{ name: t, select_arg: { 0: 2.0 } }]", { taskname: "t", raw: params(float64(2)) }),
    ).toBe("kill");
    expect(decide("drop_task_killswitch: [{ name: t, select_arg: { 0: 2.0 } }]", { taskname: "t", args: [2] })).toBe(
      "keep",
    );
    expect(decide("drop_task_killswitch: [{ name: t, select_arg: { 0: 2 } }]", { taskname: "t", args: [2] })).toBe(
      "kill",
    );
  });

  test("zstd-compressed parameters are read", () => {
    expect(decide(selector, { taskname: "sentry.tasks.unmerge", kwargs: { project_id: 123 }, zstd: true })).toBe(
      "kill",
    );
  });

  test("fails open: garbage, empty parameters_bytes, JSON parameters, bin values", () => {
    expect(decide(selector, { taskname: "sentry.tasks.unmerge", raw: new Uint8Array([0xff, 0xff, 0xff]) })).toBe(
      "undecodable",
    );
    expect(decide(selector, { taskname: "sentry.tasks.unmerge", raw: new Uint8Array() })).toBe("undecodable");
    expect(
      decide(selector, { taskname: "sentry.tasks.unmerge", args: [123], kwargs: { blob: new Uint8Array([1]) } }),
    ).toBe("undecodable");
    const json = toBinary(
      TaskActivationSchema,
      create(TaskActivationSchema, { taskname: "sentry.tasks.unmerge", parameters: '{"args":[123],"kwargs":{}}' }),
    );
    expect(
      verdict(
        decideForBytes(parseRuntimeConfig(selector), {
          taskname: "sentry.tasks.unmerge",
          namespace: "ns",
          activation: json,
        }),
      ),
    ).toBe("undecodable");
  });

  test("a selector without conditions matches nothing, and the load says so", () => {
    const rules = parseRuntimeConfig("drop_task_killswitch: [{ name: t }]");
    expect(rules.notes.join()).toContain("matches nothing");
    expect(decide("drop_task_killswitch: [{ name: t }]", { taskname: "t", args: [1] })).toBe("keep");
  });

  test("a whole-task rule wins over a selector for the same task", () => {
    const rules = parseRuntimeConfig("drop_task_killswitch: [{ name: t, select_arg: { 0: 1 } }, t]");
    const d = decideForBytes(rules, {
      taskname: "t",
      namespace: "ns",
      activation: activationBytes({ taskname: "t", args: [2] }),
    });
    expect(d).toEqual({ kill: true, match: "whole_task" });
  });

  test("both formats in one file", () => {
    const yaml =
      "drop_task_killswitch: [{ name: t, select_arg: { 0: 1 } }]\nkill_switch: [{ taskname: t, args: [{ keyword: k, values: [2] }] }]";
    expect(decide(yaml, { taskname: "t", args: [1] })).toBe("kill");
    expect(decide(yaml, { taskname: "t", kwargs: { k: 2 } })).toBe("kill");
    expect(decide(yaml, { taskname: "t", args: [3] })).toBe("keep");
    expect(parseRuntimeConfig(yaml).notes.join()).toContain("earlier format");
  });
});
