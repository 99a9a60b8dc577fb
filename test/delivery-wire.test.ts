// The streaming delivery codecs (protocol/delivery-messages.ts) and the
// streaming frame reader (connect/frame.ts FrameReader) against
// @bufbuild/protobuf's generated code for proto/taskplatform/v1/delivery.proto.
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { BrokerMessageSchema, WorkerMessageSchema } from "../src/gen/taskplatform/v1/delivery_pb.ts";
import { FrameReader, frameMessage } from "../src/connect/frame.ts";
import {
  decodeBrokerMessage,
  decodeWorkerMessage,
  encodeBrokerMessage,
  encodeWorkerMessage,
} from "../src/protocol/delivery-messages.ts";

describe("delivery messages", () => {
  test("WorkerMessage: ours decodes what protobuf-es writes, and the other way round", () => {
    const bytes = toBinary(
      WorkerMessageSchema,
      create(WorkerMessageSchema, {
        open: { namespace: "ns", application: "app", worker: "host:1" },
        credit: 64,
        results: [
          { id: "a", status: 5 },
          { id: "b", status: 4, maxAttempts: 7, delayOnRetry: 30n, fetchNextTask: { namespace: "x" } },
        ],
        revoke: 3,
      }),
    );
    const m = decodeWorkerMessage(bytes);
    expect(m.open).toEqual({ namespace: "ns", application: "app", worker: "host:1" });
    expect(m.credit).toBe(64);
    expect(m.revoke).toBe(3);
    expect(m.results.map((r) => [r.id, r.status, r.maxAttempts, r.delayOnRetry])).toEqual([
      ["a", 5, undefined, undefined],
      ["b", 4, 7, 30n],
    ]);
    const back = fromBinary(
      WorkerMessageSchema,
      encodeWorkerMessage({ open: { application: "app" }, credit: 2, results: [{ id: "c", status: 3 }], revoke: 1 }),
    );
    expect(back.open?.application).toBe("app");
    expect(back.open?.namespace).toBeUndefined();
    expect(back.credit).toBe(2);
    expect(back.revoke).toBe(1);
    expect(back.results.map((r) => [r.id, r.status])).toEqual([["c", 3]]);
    expect(decodeWorkerMessage(new Uint8Array(0))).toEqual({ credit: 0, results: [], revoke: 0 });
  });

  test("BrokerMessage carries the stored activation bytes unchanged", () => {
    const acts = [1, 2, 3].map((i) =>
      toBinary(TaskActivationSchema, create(TaskActivationSchema, { id: `id${i}`, namespace: "ns", taskname: "t" })),
    );
    const bytes = encodeBrokerMessage(acts, 5, 2);
    const parsed = fromBinary(BrokerMessageSchema, bytes);
    expect(parsed.activations.map((a) => a.id)).toEqual(["id1", "id2", "id3"]);
    expect(parsed.resultsCommitted).toBe(5);
    expect(parsed.revoked).toBe(2);
    const ours = decodeBrokerMessage(bytes);
    expect(ours.activations.map((a) => Buffer.from(a).toString("hex"))).toEqual(
      acts.map((a) => Buffer.from(a).toString("hex")),
    );
    expect(ours.resultsCommitted).toBe(5);
    expect(decodeBrokerMessage(encodeBrokerMessage([], 0, 0))).toEqual({
      activations: [],
      resultsCommitted: 0,
      revoked: 0,
    });
  });

  test("FrameReader reassembles messages split anywhere and refuses oversized or compressed ones", () => {
    const messages = [Buffer.from("a"), Buffer.alloc(0), Buffer.alloc(70_000, 7), Buffer.from("last")];
    const wire = Buffer.concat(messages.map((m) => frameMessage(m)));
    for (const step of [1, 3, 5, 4096, wire.byteLength]) {
      const r = new FrameReader(1 << 20);
      const got: Buffer[] = [];
      for (let i = 0; i < wire.byteLength; i += step)
        got.push(...r.push(wire.subarray(i, i + step)).map((b) => Buffer.from(b)));
      expect(got.map((b) => b.toString("hex"))).toEqual(messages.map((b) => b.toString("hex")));
      expect(r.buffered()).toBe(0);
    }
    const small = new FrameReader(10);
    expect(small.push(frameMessage(Buffer.alloc(11)))).toEqual([]);
    expect(small.tooLarge).toBe(true);
    const z = new FrameReader(10);
    const compressed = frameMessage(Buffer.from("x"));
    compressed[0] = 1;
    z.push(compressed);
    expect(z.compressed).toBe(true);
  });
});
