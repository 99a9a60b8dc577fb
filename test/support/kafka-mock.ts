// Test fixture: a real Kafka-protocol cluster (librdkafka's mock cluster, see
// test/kafka-mock/mock-cluster.c) in a child process. Compiles the C program
// once per source version into the temp dir (never committed), starts it, and
// drives it over its stdin line protocol. `produce` sends messages through a
// real librdkafka producer (compression.type per call), the way Sentry's
// producers write to Kafka.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SOURCE = join(import.meta.dir, "..", "kafka-mock", "mock-cluster.c");

/** librdkafka's compression.codec values. */
export type KafkaCodec = "none" | "gzip" | "snappy" | "lz4" | "zstd";

export interface MockMessage {
  value: Uint8Array | null;
  key?: Uint8Array | string | null;
  headers?: Record<string, Uint8Array | string>;
}

export interface ConsumedMockMessage {
  partition: number;
  offset: string;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Record<string, string>;
}

export interface KafkaMock {
  /** Comma-separated host:port list of the mock brokers. */
  bootstrap: string;
  createTopic(name: string, partitions: number): Promise<void>;
  /** Fail the next `count` requests of Kafka API `apiKey` with error code `errorCode`. */
  pushErrors(apiKey: number, errorCode: number, count: number): Promise<void>;
  clearErrors(apiKey: number): Promise<void>;
  brokerDown(id: number): Promise<void>;
  brokerUp(id: number): Promise<void>;
  /**
   * Produces with librdkafka (acks=all, compression.codec `codec`); one call's
   * messages to one partition form compressed batches. Resolves once every
   * message is acknowledged. `partition` -1 (default): librdkafka's partitioner.
   */
  produce(topic: string, messages: MockMessage[], opts?: { codec?: KafkaCodec; partition?: number }): Promise<void>;
  /**
   * Every message of `topic` (all partitions, from the start to the end) read
   * with a librdkafka consumer, which decodes every codec and joins no group
   * (so no join wait); waits until at least `min` are there, or timeoutMs.
   */
  consume(topic: string, opts?: { min?: number; timeoutMs?: number }): Promise<ConsumedMockMessage[]>;
  stop(): Promise<void>;
}

const bytes = (v: Uint8Array | string) => (typeof v === "string" ? new TextEncoder().encode(v) : v);

const tempFile = (what: string) =>
  join(tmpdir(), `taskplatform-${what}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.bin`);

/** The consume command's file: per message u32 partition, u64 offset, then the produce command's layout. */
function decodeMessages(buf: Uint8Array): ConsumedMockMessage[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: ConsumedMockMessage[] = [];
  let at = 0;
  const field = () => {
    const n = view.getUint32(at);
    at += 4;
    if (n === 0xffffffff) return null;
    const v = buf.slice(at, at + n);
    at += n;
    return v;
  };
  while (at < buf.byteLength) {
    const partition = view.getUint32(at);
    const offset = view.getBigUint64(at + 4).toString();
    at += 12;
    const key = field();
    const value = field();
    const headers: Record<string, string> = {};
    const count = view.getUint16(at);
    at += 2;
    for (let i = 0; i < count; i++) {
      const n = view.getUint16(at);
      at += 2;
      const name = new TextDecoder().decode(buf.subarray(at, at + n));
      at += n;
      const v = field();
      headers[name] = v ? new TextDecoder().decode(v) : "";
    }
    out.push({ partition, offset, key, value, headers });
  }
  return out;
}

/** The produce command's file: per message u32 key len, key, u32 value len, value, u16 headers, headers. */
function encodeMessages(messages: MockMessage[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const u32 = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    return b;
  };
  const u16 = (n: number) => {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, n);
    return b;
  };
  const field = (v: Uint8Array | string | null | undefined) => {
    if (v === null || v === undefined) parts.push(u32(0xffffffff));
    else {
      const b = bytes(v);
      parts.push(u32(b.byteLength), b);
    }
  };
  for (const m of messages) {
    field(m.key);
    field(m.value);
    const headers = Object.entries(m.headers ?? {});
    parts.push(u16(headers.length));
    for (const [name, value] of headers) {
      const n = bytes(name);
      parts.push(u16(n.byteLength), n);
      field(value);
    }
  }
  return Buffer.concat(parts);
}

/** Kafka API keys used by tests when injecting errors. */
export const ApiKey = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  JoinGroup: 11,
  Heartbeat: 12,
} as const;
/** Kafka error codes used by tests. */
export const KafkaError = {
  NotLeaderForPartition: 6,
  RequestTimedOut: 7,
  CoordinatorNotAvailable: 15,
  NotEnoughReplicas: 19,
  RebalanceInProgress: 27,
} as const;

/** Path of the compiled mock cluster, building it when the source changed. */
export function mockClusterBinary(): string {
  const src = readFileSync(SOURCE);
  const hash = createHash("sha256").update(src).digest("hex").slice(0, 12);
  const dir = join(tmpdir(), "taskplatform-kafka-mock");
  const bin = join(dir, `mock-cluster-${hash}`);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  const cc = Bun.spawnSync(["gcc", "-O2", "-o", tmp, SOURCE, "-lrdkafka"], { stderr: "pipe" });
  if (cc.exitCode !== 0) {
    throw new Error(
      `compiling the Kafka mock cluster failed (is librdkafka-dev installed? scripts/install-test-deps.sh): ${cc.stderr.toString()}`,
    );
  }
  // Rename is atomic, so parallel test files never run a half-written binary.
  renameSync(tmp, bin);
  return bin;
}

export async function startKafkaMock(opts: { brokers?: number } = {}): Promise<KafkaMock> {
  const proc = Bun.spawn([mockClusterBinary(), String(opts.brokers ?? 1)], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const nextLine = async (): Promise<string> => {
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        return line;
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("Kafka mock cluster exited");
      buffered += decoder.decode(value, { stream: true });
    }
  };
  const first = await nextLine();
  const m = /^bootstrap (\S+)$/.exec(first);
  if (!m) throw new Error(`Kafka mock cluster: unexpected first line ${first}`);
  // Commands are answered in order; serialise them so replies match requests.
  let queue: Promise<unknown> = Promise.resolve();
  const command = (line: string): Promise<void> => {
    const run = queue.then(async () => {
      proc.stdin.write(line + "\n");
      await proc.stdin.flush();
      const answer = await nextLine();
      if (answer !== "ok" && !answer.startsWith("ok ")) throw new Error(`Kafka mock cluster: ${line}: ${answer}`);
    });
    queue = run.catch(() => {});
    return run;
  };
  let stopped = false;
  return {
    bootstrap: m[1]!,
    createTopic: (name, partitions) => command(`topic ${name} ${partitions}`),
    pushErrors: (apiKey, code, count) => command(`error ${apiKey} ${code} ${count}`),
    clearErrors: (apiKey) => command(`clear ${apiKey}`),
    brokerDown: (id) => command(`broker-down ${id}`),
    brokerUp: (id) => command(`broker-up ${id}`),
    async consume(topic, opts = {}) {
      const file = tempFile("consume");
      try {
        await command(`consume ${topic} ${opts.min ?? 0} ${opts.timeoutMs ?? 30_000} ${file}`);
        return decodeMessages(readFileSync(file));
      } finally {
        rmSync(file, { force: true });
      }
    },
    async produce(topic, messages, opts = {}) {
      const file = tempFile("produce");
      writeFileSync(file, encodeMessages(messages));
      try {
        await command(`produce ${topic} ${opts.partition ?? -1} ${opts.codec ?? "none"} ${file}`);
      } finally {
        rmSync(file, { force: true });
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await proc.stdin.end();
      const timer = setTimeout(() => proc.kill(9), 5000);
      await proc.exited;
      clearTimeout(timer);
    },
  };
}
