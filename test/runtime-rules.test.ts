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
  let params = opts.raw ?? encode({ args: opts.args ?? [], kwargs: opts.kwargs ?? {} });
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

const decide = (yaml: string, a: Parameters<typeof activationBytes>[0]) =>
  decideForBytes(parseRuntimeConfig(yaml), {
    taskname: a.taskname,
    namespace: a.namespace ?? "ns",
    activation: activationBytes(a),
  });

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

  test("demoted namespaces as a list take demoted_topic", () => {
    const rules = parseRuntimeConfig("demoted_namespaces: [x, y]\ndemoted_topic: long\n");
    expect(demotedTopic(rules, "x")).toBe("long");
    expect(demotedTopic(rules, "y")).toBe("long");
  });

  test.each([
    ["kill_switch: [{ taskname: a, args: [{ values: [1] }] }]", "position or a keyword"],
    ["kill_switch: [{ taskname: a, args: [{ position: 0, values: [] }] }]", "kill_switch.0.args.0.values"],
    ["kill_switch: [{ tasknme: a }]", "kill_switch.0"],
    ["kill_switch: {a: 1", "YAML"],
    ["demoted_namespaces: [x]", "demoted_topic"],
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
    ).toBe("undecodable");
  });

  test("parameters are decoded only when a rule needs them", () => {
    const rules = parseRuntimeConfig("kill_switch: [{ taskname: t }, { taskname: u, args: [{ position: 0, values: [1] }] }]");
    let calls = 0;
    const params = () => {
      calls++;
      return { args: [1], kwargs: {} };
    };
    expect(killDecision(rules, { taskname: "t", namespace: "n" }, params)).toBe("kill");
    expect(killDecision(rules, { taskname: "v", namespace: "n" }, params)).toBe("keep");
    expect(calls).toBe(0);
    expect(killDecision(rules, { taskname: "u", namespace: "n" }, params)).toBe("kill");
    expect(calls).toBe(1);
  });
});

describe("activationParameters", () => {
  test("falls back to the deprecated JSON parameters", () => {
    expect(activationParameters({ headers: {}, parameters: '{"args":[1],"kwargs":{"a":2}}', parametersBytes: new Uint8Array() })).toEqual({
      args: [1],
      kwargs: { a: 2 },
    });
  });
  test("rejects a msgpack value that is not {args, kwargs}", () => {
    expect(() => activationParameters({ headers: {}, parameters: "", parametersBytes: encode([1, 2]) })).toThrow(UndecodableParameters);
  });
});
