// A fast decoder for the TaskActivation fields the worker reads, straight
// from the protobuf bytes the broker sends. The generic @bufbuild codec costs
// more per task than the rest of the worker's bookkeeping together; field
// numbers per wire-contract.md. Checked against @bufbuild/protobuf in
// test/worker-unit.test.ts.

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

export class ActivationDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ActivationDecodeError";
  }
}

const utf8 = new TextDecoder();

class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    pos: number,
    readonly end: number,
  ) {
    this.pos = pos;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ActivationDecodeError("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw new ActivationDecodeError("varint too long");
  }
  bytes(): Uint8Array {
    const len = this.varint();
    const start = this.pos;
    this.pos += len;
    if (this.pos > this.end) throw new ActivationDecodeError("truncated field");
    return this.buf.subarray(start, this.pos);
  }
  string(): string {
    return utf8.decode(this.bytes());
  }
  sub(): Reader {
    const len = this.varint();
    const r = new Reader(this.buf, this.pos, this.pos + len);
    this.pos += len;
    if (this.pos > this.end) throw new ActivationDecodeError("truncated message");
    return r;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.pos += this.varint();
    else if (wire === 5) this.pos += 4;
    else throw new ActivationDecodeError(`unsupported wire type ${wire}`);
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
  const r = new Reader(buf, 0, buf.byteLength);
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    switch (wire === 2 || wire === 0 ? field : -1) {
      case 1: a.id = r.string(); break;
      case 2: a.namespace = r.string(); break;
      case 3: a.taskname = r.string(); break;
      case 4: a.parameters = r.string(); break;
      case 5: {
        const m = r.sub();
        let k = "";
        let v = "";
        while (m.pos < m.end) {
          const t = m.varint();
          if (t === 10) k = m.string();
          else if (t === 18) v = m.string();
          else m.skip(t & 7);
        }
        a.headers[k] = v;
        break;
      }
      case 6: {
        const m = r.sub();
        let seconds = 0;
        let nanos = 0;
        while (m.pos < m.end) {
          const t = m.varint();
          if (t === 8) seconds = m.varint();
          else if (t === 16) nanos = m.varint();
          else m.skip(t & 7);
        }
        a.receivedAtMs = seconds * 1000 + Math.floor(nanos / 1e6);
        break;
      }
      case 7: {
        const m = r.sub();
        while (m.pos < m.end) {
          const t = m.varint();
          if (t === 8) a.attempts = m.varint();
          else if (t === 16) a.maxAttempts = m.varint();
          else if (t === 24) a.onAttemptsExceeded = m.varint();
          else if (t === 32) a.atMostOnce = m.varint() !== 0;
          else if (t === 40) a.delayOnRetry = m.varint();
          else m.skip(t & 7);
        }
        break;
      }
      case 8: a.processingDeadlineS = r.varint(); break;
      case 9: a.expiresS = r.varint(); break;
      case 11: a.delayS = r.varint(); break;
      case 12: a.application = r.string(); break;
      case 13: a.parametersBytes = r.bytes(); break;
      default: r.skip(wire);
    }
  }
  if (r.pos !== r.end) throw new ActivationDecodeError("trailing bytes");
  return a;
}
