// Streaming delivery from an unrelated gRPC implementation: Python grpcio (C
// core, Debian's) runs the Deliver stream full duplex against a broker process
// (each activation arrives only after the previous result went out on the same
// open stream), signed over its opening message as docs/streaming.md says.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { toBinary } from "@bufbuild/protobuf";
import { join, resolve } from "node:path";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { createBrokerClient } from "../src/connect/client.ts";
import { activation } from "./support/activations.ts";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";

const ROOT = resolve(import.meta.dir, "..");
const PYTHON = "/usr/bin/python3";
const SECRET = "stream secret";

let gen: string;
let broker: BrokerProcess;
beforeAll(async () => {
  gen = tempDir("tp-interop-stream-py-");
  const r = Bun.spawnSync(
    [
      "protoc",
      "-I",
      join(ROOT, "proto"),
      `--python_out=${gen}`,
      "sentry_protos/taskbroker/v1/taskbroker.proto",
      "taskplatform/v1/delivery.proto",
    ],
    { cwd: ROOT, stderr: "pipe" },
  );
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  broker = await spawnBroker({ TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify([SECRET]) });
});
afterAll(async () => {
  await broker.stop();
});

async function runPython(
  args: string[],
): Promise<{ ids: string[]; committed: number; most_in_one_message: number; status: string }> {
  const p = Bun.spawn(
    [PYTHON, join(import.meta.dir, "interop/python_stream_client.py"), gen, broker.address, ...args],
    {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    },
  );
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`python stream client failed (${code}): ${err}`);
  return JSON.parse(out);
}

describe("Python grpcio on the delivery stream", () => {
  test("full duplex with credit 1: every activation, one at a time, all results committed, ended OK", async () => {
    const producer = createBrokerClient({ address: broker.address, secrets: [SECRET] });
    const bytes = Array.from({ length: 20 }, () =>
      toBinary(TaskActivationSchema, activation({ application: "pystream" })),
    );
    await producer.produce(bytes);
    await producer.close();
    const out = await runPython(["pystream", "20", SECRET]);
    expect(out.status).toBe("OK");
    expect(out.committed).toBe(20);
    expect(out.most_in_one_message).toBe(1);
    expect(new Set(out.ids).size).toBe(20);
  });

  test("unsigned: UNAUTHENTICATED", async () => {
    const out = await runPython(["pystream", "1"]);
    expect(out.status).toBe("UNAUTHENTICATED");
  });
});
