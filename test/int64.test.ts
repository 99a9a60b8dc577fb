// 64-bit integers between Sentry's Python client and ours, exactly: vectors
// made by Debian's python3-msgpack (the library Sentry's client uses) at test
// time, decoded by our one parameter codec; our encoding of the same values
// is byte-identical and decodes in Python to the same integers. Outside the
// safe range (2^53 - 1) values are bigint, inside they stay numbers. Legacy
// JSON parameters keep their big integers too. Eager mode shows a task
// receiving and re-dispatching a bigint unchanged.
import { describe, expect, test } from "bun:test";
import {
  activationParameters,
  decodeLegacyParameters,
  decodeParameters,
  encodeParameters,
} from "../src/activation/parameters.ts";
import { createApp, currentTask } from "../src/sdk/index.ts";

const PY = "/usr/bin/python3";
const python = (script: string, input = ""): string => {
  const r = Bun.spawnSync([PY, "-c", script], {
    stdin: new TextEncoder().encode(input),
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`python failed: ${r.stderr.toString()}`);
  return r.stdout.toString();
};

// Python ints at and around every boundary a JavaScript number or msgpack format has.
const PY_VALUES =
  "[2**63-1, -2**63, 2**64-1, 2**53-1, 2**53, 2**53+1, -(2**53-1), -(2**53), 2**40, -(2**40), 2**32, 7, -5]";
const EXPECTED: Array<number | bigint> = [
  9223372036854775807n,
  -9223372036854775808n,
  18446744073709551615n,
  Number.MAX_SAFE_INTEGER,
  9007199254740992n,
  9007199254740993n,
  Number.MIN_SAFE_INTEGER,
  -9007199254740992n,
  2 ** 40,
  -(2 ** 40),
  2 ** 32,
  7,
  -5,
];

const vectors = JSON.parse(
  python(`
import json, msgpack
v = ${PY_VALUES}
print(json.dumps({
  "msgpack": msgpack.packb({"args": v, "kwargs": {"org_id": 2**63-1, "small": 3}}).hex(),
  "json": json.dumps({"args": v, "kwargs": {"org_id": 2**63-1}}),
}))
`),
) as { msgpack: string; json: string };

describe("64-bit integers against Python's msgpack", () => {
  test("Python -> TypeScript: bigint beyond the safe range, numbers inside it", () => {
    const p = decodeParameters(Buffer.from(vectors.msgpack, "hex"), undefined);
    expect(p.args).toEqual(EXPECTED);
    expect(p.kwargs).toEqual({ org_id: 9223372036854775807n, small: 3 });
    expect(typeof p.args[3]).toBe("number");
    expect(typeof p.args[4]).toBe("bigint");
  });

  test("TypeScript -> Python: the same bytes as Python writes, the same integers when Python reads them", () => {
    const ours = encodeParameters({ args: EXPECTED, kwargs: { org_id: 9223372036854775807n, small: 3 } }).bytes;
    expect(Buffer.from(ours).toString("hex")).toBe(vectors.msgpack);
    const read = python(
      `
import sys, msgpack
p = msgpack.unpackb(bytes.fromhex(sys.stdin.read()), raw=False)
print(p["args"] == ${PY_VALUES} and p["kwargs"] == {"org_id": 2**63-1, "small": 3} and all(type(x) is int for x in p["args"]))
`,
      Buffer.from(ours).toString("hex"),
    );
    expect(read.trim()).toBe("True");
  });

  test("compressed parameters round-trip the same way", () => {
    const packed = encodeParameters({ args: EXPECTED, kwargs: {} }, "zstd");
    expect(packed.compression).toBe("zstd");
    expect(decodeParameters(packed.bytes, "zstd").args).toEqual(EXPECTED);
  });

  test("legacy JSON parameters keep big integers exactly", () => {
    expect(decodeLegacyParameters(vectors.json)).toEqual({ args: EXPECTED, kwargs: { org_id: 9223372036854775807n } });
    const view = activationParameters({ headers: {}, parameters: vectors.json, parametersBytes: new Uint8Array() });
    expect(view.args[0]).toBe(9223372036854775807n);
  });

  test("an integer wider than 64 bits is refused at dispatch, not cut", () => {
    expect(() => encodeParameters({ args: [2n ** 64n], kwargs: {} })).toThrow(/does not fit in 64 bits/);
    expect(() => encodeParameters({ args: [-(2n ** 63n) - 1n], kwargs: {} })).toThrow(/does not fit in 64 bits/);
  });

  test("a task receives a bigint and passes it on unchanged (eager mode: through the codec both ways)", async () => {
    const app = createApp({ name: "int64test", eager: true });
    const ns = app.namespace("int64");
    const seen: unknown[] = [];
    const second = ns.register({
      name: "int64.second",
      handler: (id: bigint) => void seen.push(["second", id, currentTask()!.taskname]),
    });
    const first = ns.register({
      name: "int64.first",
      handler: async (id: bigint, small: number) => {
        seen.push(["first", id, small]);
        await second.delay(id);
      },
    });
    await first.delay(9223372036854775807n, 42);
    expect(seen).toEqual([
      ["first", 9223372036854775807n, 42],
      ["second", 9223372036854775807n, "int64.second"],
    ]);
    await app.close();
  });
});
