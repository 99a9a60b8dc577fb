// A fast decoder for the TaskActivation fields the worker reads, straight
// from the protobuf bytes the broker sends. The generic @bufbuild codec costs
// more per task than the rest of the worker's bookkeeping together; field
// numbers per wire-contract.md. Malformed bytes throw MalformedMessage.
// Checked against @bufbuild/protobuf in test/worker-unit.test.ts.

import { WIRE_LEN, WIRE_VARINT, WireReader } from "../protocol/wire-reader.ts";

/** The activation as the worker sees it (plain data; ms and numbers instead of bigint/Timestamp). */
export interface WireActivation {
  id: string;
  namespace: string;
  taskname: string;
  parameters: string;
  headers: Record<string, string>;
  /** received_at in epoch ms, or undefined when absent. */
  receivedAtMs: number | undefined;
  attempts: number;
  maxAttempts: number;
  onAttemptsExceeded: number;
  atMostOnce: boolean;
  delayOnRetry: number | undefined;
  processingDeadlineS: number;
  expiresS: number | undefined;
  delayS: number | undefined;
  application: string | undefined;
  parametersBytes: Uint8Array;
}

/** One headers map entry: key = 1, value = 2. */
function readHeader(m: WireReader, headers: Record<string, string>): void {
  let k = "";
  let v = "";
  while (!m.done()) {
    const [f, wt] = m.tag();
    if (f === 1) (m.expect(f, wt, WIRE_LEN), (k = m.string()));
    else if (f === 2) (m.expect(f, wt, WIRE_LEN), (v = m.string()));
    else m.skip(wt);
  }
  headers[k] = v;
}

/** google.protobuf.Timestamp { seconds = 1; nanos = 2 } as epoch ms. */
function readTimestampMs(m: WireReader): number {
  let seconds = 0;
  let nanos = 0;
  while (!m.done()) {
    const [f, wt] = m.tag();
    if (f === 1) (m.expect(f, wt, WIRE_VARINT), (seconds = m.varint()));
    else if (f === 2) (m.expect(f, wt, WIRE_VARINT), (nanos = m.varint()));
    else m.skip(wt);
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

/** RetryState (wire-contract.md): attempts 1, max_attempts 2, on_attempts_exceeded 3, at_most_once 4, delay_on_retry 5. */
function readRetryState(m: WireReader, a: WireActivation): void {
  while (!m.done()) {
    const [f, wt] = m.tag();
    if (f >= 1 && f <= 5) m.expect(f, wt, WIRE_VARINT);
    switch (f) {
      case 1: a.attempts = m.varint(); break;
      case 2: a.maxAttempts = m.varint(); break;
      case 3: a.onAttemptsExceeded = m.varint(); break;
      case 4: a.atMostOnce = m.varint() !== 0; break;
      case 5: a.delayOnRetry = m.varint(); break;
      default: m.skip(wt);
    }
  }
}

export function decodeActivation(buf: Uint8Array): WireActivation {
  const a: WireActivation = {
    id: "",
    namespace: "",
    taskname: "",
    parameters: "",
    headers: {},
    receivedAtMs: undefined,
    attempts: 0,
    maxAttempts: 0,
    onAttemptsExceeded: 0,
    atMostOnce: false,
    delayOnRetry: undefined,
    processingDeadlineS: 0,
    expiresS: undefined,
    delayS: undefined,
    application: undefined,
    parametersBytes: new Uint8Array(0),
  };
  const r = new WireReader(buf);
  while (!r.done()) {
    const [field, wt] = r.tag();
    switch (field) {
      case 1: r.expect(field, wt, WIRE_LEN); a.id = r.string(); break;
      case 2: r.expect(field, wt, WIRE_LEN); a.namespace = r.string(); break;
      case 3: r.expect(field, wt, WIRE_LEN); a.taskname = r.string(); break;
      case 4: r.expect(field, wt, WIRE_LEN); a.parameters = r.string(); break;
      case 5: r.expect(field, wt, WIRE_LEN); readHeader(r.sub(), a.headers); break;
      case 6: r.expect(field, wt, WIRE_LEN); a.receivedAtMs = readTimestampMs(r.sub()); break;
      case 7: r.expect(field, wt, WIRE_LEN); readRetryState(r.sub(), a); break;
      case 8: r.expect(field, wt, WIRE_VARINT); a.processingDeadlineS = r.varint(); break;
      case 9: r.expect(field, wt, WIRE_VARINT); a.expiresS = r.varint(); break;
      case 11: r.expect(field, wt, WIRE_VARINT); a.delayS = r.varint(); break;
      case 12: r.expect(field, wt, WIRE_LEN); a.application = r.string(); break;
      case 13: r.expect(field, wt, WIRE_LEN); a.parametersBytes = r.bytes(); break;
      default: r.skip(wt);
    }
  }
  return a;
}
