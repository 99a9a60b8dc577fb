// The hand-written protobuf/gRPC codec of the fast path (src/protocol/messages.ts)
// and its gRPC framing (src/connect/frame.ts),
// checked against @bufbuild/protobuf on the same messages: what the fast path
// decodes must equal what the generated code decodes, and its responses must
// decode with the generated code.
import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  GetTaskRequestSchema,
  GetTaskResponseSchema,
  SetBatchActivationStatusRequestSchema,
  SetTaskStatusRequestSchema,
  SetTaskStatusResponseSchema,
  TaskActivationSchema,
} from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { ProduceRequestSchema, ProduceResponseSchema } from "../src/gen/taskplatform/v1/ingest_pb.ts";
import {
  MalformedMessage,
  decodeGetTaskRequest,
  decodeProduceRequest,
  decodeProduceResponse,
  decodeSetBatchRequest,
  decodeSetTaskStatusRequest,
  decodeTaskResponse,
  encodeGetTaskRequest,
  encodeProduceRequest,
  encodeSetBatchRequest,
  encodeSetTaskStatusRequest,
} from "../src/protocol/messages.ts";
import {
  framedProduceResponse,
  framedTaskResponse,
  frameLength,
  percentDecodeGrpcMessage,
  percentEncodeGrpcMessage,
} from "../src/connect/frame.ts";

const activationBytes = (size: number) =>
  toBinary(
    TaskActivationSchema,
    create(TaskActivationSchema, {
      id: "f".repeat(32),
      namespace: "ns",
      taskname: "t",
      application: "app",
      parametersBytes: new Uint8Array(size).fill(3),
    }),
  );

describe("request decoding matches the generated code", () => {
  test("GetTaskRequest, including unset, empty and unknown fields", () => {
    for (const init of [{}, { application: "sentry" }, { namespace: "n", application: "a" }, { namespace: "" }]) {
      const bytes = toBinary(GetTaskRequestSchema, create(GetTaskRequestSchema, init));
      expect(decodeGetTaskRequest(bytes)).toEqual(init);
      expect(decodeGetTaskRequest(encodeGetTaskRequest(init))).toEqual(init);
    }
    // Unknown field 9 (varint) and 10 (bytes) are skipped.
    expect(decodeGetTaskRequest(Buffer.from([0x48, 0x96, 0x01, 0x52, 0x01, 0x41, 0x12, 0x01, 0x61]))).toEqual({
      application: "a",
    });
  });

  test("SetTaskStatusRequest with every field, and batches", () => {
    const init = {
      id: "abc",
      status: 4,
      fetchNextTask: { namespace: "n", application: "a" },
      maxAttempts: 7,
      delayOnRetry: 2n ** 40n,
    };
    const bytes = toBinary(SetTaskStatusRequestSchema, create(SetTaskStatusRequestSchema, init));
    const expected = {
      id: "abc",
      status: 4,
      fetchNext: { namespace: "n", application: "a" },
      maxAttempts: 7,
      delayOnRetry: 2n ** 40n,
    };
    expect(decodeSetTaskStatusRequest(bytes)).toEqual(expected);
    expect(fromBinary(SetTaskStatusRequestSchema, encodeSetTaskStatusRequest(expected))).toMatchObject(init);
    const batch = toBinary(
      SetBatchActivationStatusRequestSchema,
      create(SetBatchActivationStatusRequestSchema, { updates: [init, { id: "x", status: 5 }] }),
    );
    expect(decodeSetBatchRequest(batch)).toEqual([expected, { id: "x", status: 5 }]);
    expect(decodeSetBatchRequest(encodeSetBatchRequest([expected]))).toEqual([expected]);
  });

  test("ProduceRequest yields the activation bytes unchanged", () => {
    const acts = [activationBytes(10), activationBytes(300), activationBytes(70_000)];
    const bytes = toBinary(
      ProduceRequestSchema,
      create(ProduceRequestSchema, { activations: acts.map((a) => fromBinary(TaskActivationSchema, a)) }),
    );
    expect(decodeProduceRequest(bytes).map((a) => Buffer.from(a))).toEqual(acts.map((a) => Buffer.from(a)));
    expect(Buffer.from(encodeProduceRequest(acts))).toEqual(Buffer.from(bytes));
  });

  test("truncated or malformed input throws MalformedMessage, never anything else", () => {
    const good = toBinary(SetTaskStatusRequestSchema, create(SetTaskStatusRequestSchema, { id: "abc", status: 5 }));
    // Bytes: 0a 03 'a' 'b' 'c' 10 05 -- every cut except at the field boundary (5) is inside a field.
    for (const cut of [1, 2, 3, 4, 6]) {
      expect(() => decodeSetTaskStatusRequest(good.subarray(0, cut))).toThrow(MalformedMessage);
    }
    const bad = [
      [0x0a, 0x05, 0x61], // length past the end
      [0x10], // truncated varint
      [0x0f], // wire type 7
      [0x00], // field 0
      [0x0a, 0x02, 0xc3, 0x28], // invalid UTF-8 in a string
      [0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01], // varint too long
    ];
    for (const b of bad) expect(() => decodeSetTaskStatusRequest(new Uint8Array(b))).toThrow(MalformedMessage);
    for (let i = 0; i < 2000; i++) {
      const junk = crypto.getRandomValues(new Uint8Array(1 + (i % 40)));
      for (const decode of [
        decodeGetTaskRequest,
        decodeSetTaskStatusRequest,
        decodeSetBatchRequest,
        decodeProduceRequest,
      ]) {
        try {
          decode(junk);
        } catch (err) {
          expect(err).toBeInstanceOf(MalformedMessage);
        }
      }
    }
  });
});

describe("responses decode with the generated code", () => {
  test("task responses wrap the stored bytes unchanged (field 1), for small and large activations", () => {
    for (const size of [0, 100, 20_000, 3_000_000]) {
      const act = activationBytes(size);
      const framed = framedTaskResponse(act);
      expect(frameLength(framed)).toBe(framed.byteLength - 5);
      expect(framed[0]).toBe(0);
      const msg = framed.subarray(5);
      expect(Buffer.from(decodeTaskResponse(msg)!)).toEqual(Buffer.from(act));
      const viaGenerated = fromBinary(GetTaskResponseSchema, msg);
      expect(Buffer.from(toBinary(TaskActivationSchema, viaGenerated.task!))).toEqual(Buffer.from(act));
    }
    const empty = framedTaskResponse(null);
    expect([...empty]).toEqual([0, 0, 0, 0, 0]);
    expect(fromBinary(SetTaskStatusResponseSchema, empty.subarray(5)).task).toBeUndefined();
    expect(decodeTaskResponse(empty.subarray(5))).toBeNull();
  });

  test("ProduceResponse", () => {
    for (const counts of [
      { accepted: 0, duplicates: 0, expired: 0 },
      { accepted: 1000, duplicates: 3, expired: 200_000 },
    ]) {
      const msg = framedProduceResponse(counts).subarray(5);
      expect(fromBinary(ProduceResponseSchema, msg)).toMatchObject(counts);
      expect(decodeProduceResponse(msg)).toEqual(counts);
    }
  });

  test("grpc-message percent-encoding round trips and leaves plain ASCII alone", () => {
    expect(percentEncodeGrpcMessage("No pending activations")).toBe("No pending activations");
    const odd = "100% broken: naïve \u2603 line\nbreak";
    const enc = percentEncodeGrpcMessage(odd);
    expect(enc).toMatch(/^[\x20-\x7e]*$/);
    expect(enc).toContain("%25");
    expect(percentDecodeGrpcMessage(enc)).toBe(odd);
  });
});
