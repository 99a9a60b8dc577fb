// Test fixture: a real Kafka-protocol cluster (librdkafka's mock cluster, see
// test/kafka-mock/mock-cluster.c) in a child process. Compiles the C program
// once per source version into the temp dir (never committed), starts it, and
// drives it over its stdin line protocol.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SOURCE = join(import.meta.dir, "..", "kafka-mock", "mock-cluster.c");

export interface KafkaMock {
  /** Comma-separated host:port list of the mock brokers. */
  bootstrap: string;
  createTopic(name: string, partitions: number): Promise<void>;
  /** Fail the next `count` requests of Kafka API `apiKey` with error code `errorCode`. */
  pushErrors(apiKey: number, errorCode: number, count: number): Promise<void>;
  clearErrors(apiKey: number): Promise<void>;
  brokerDown(id: number): Promise<void>;
  brokerUp(id: number): Promise<void>;
  stop(): Promise<void>;
}

/** Kafka API keys used by tests when injecting errors. */
export const ApiKey = { Produce: 0, Fetch: 1, ListOffsets: 2, Metadata: 3, OffsetCommit: 8, JoinGroup: 11 } as const;
/** Kafka error codes used by tests. */
export const KafkaError = { NotLeaderForPartition: 6, RequestTimedOut: 7, NotEnoughReplicas: 19 } as const;

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
      if (answer !== "ok") throw new Error(`Kafka mock cluster: ${line}: ${answer}`);
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
