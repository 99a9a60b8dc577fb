// `taskplatform deadletters list|replay|discard` against a running broker
// (separate process, request signing on): activations whose worker reports
// FAILURE with a DEADLETTER policy land in the local dead-letter table via
// upkeep; the CLI lists them (table and --json), replays one as a new
// activation a worker can claim, and discards another.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { TaskActivationStatus } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { activation, brokerClients } from "./support/activations.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { runCli } from "./support/cli-process.ts";

const SECRET = "dead-letter-test-secret";
let broker: BrokerProcess;

beforeAll(async () => {
  broker = await spawnBroker({
    TASKBROKER_UPKEEP_TASK_INTERVAL_MS: "100ms",
    TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify([SECRET]),
  });
});
afterAll(async () => {
  await broker?.stop("SIGKILL");
});

/** Runs the CLI as its own process (async, so this test process keeps serving its event loop). */
function cli(
  args: string[],
  env: Record<string, string> = { TASKBROKER_GRPC_SHARED_SECRET: JSON.stringify([SECRET]) },
) {
  return runCli(["deadletters", ...args], env);
}

interface Listing {
  total: number;
  deadLetters: Array<{ id: string; namespace: string; taskname: string; application: string; attempts: number | null }>;
}

async function listJson(): Promise<Listing> {
  const r = await cli(["list", "--broker", broker.address, "--json"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Listing;
}

/** Polls the listing until `pred` holds (upkeep moves rows every 100 ms) or 15 s pass. */
async function listUntil(pred: (l: Listing) => boolean): Promise<Listing> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const l = await listJson();
    if (pred(l) || Date.now() > deadline) return l;
  }
}

describe("deadletters", () => {
  const ids: string[] = [];

  test("failed DEADLETTER activations are listed with their task fields", async () => {
    const { ingest, consumer } = brokerClients(broker.port, SECRET);
    const batch = Array.from({ length: 3 }, () =>
      activation({ namespace: "billing", taskname: "billing.charge", application: "shop", deadLetterAfter: 1 }),
    );
    await ingest.produce({ activations: batch });
    for (let i = 0; i < 3; i++) {
      const { task } = await consumer.getTask({ application: "shop" });
      expect(task).toBeDefined();
      await consumer.setTaskStatus({ id: task!.id, status: TaskActivationStatus.FAILURE });
    }
    ids.push(...batch.map((a) => a.id).sort());

    const listing = await listUntil((l) => l.total >= 3);
    expect(listing.total).toBe(3);
    expect(listing.deadLetters.map((d) => d.id).sort()).toEqual(ids);
    for (const d of listing.deadLetters) {
      expect(d).toMatchObject({ namespace: "billing", taskname: "billing.charge", application: "shop", attempts: 0 });
    }

    const table = await cli(["list", "--broker", broker.address]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^ID\s+APPLICATION\s+NAMESPACE\s+TASKNAME\s+RUNS\s+DEAD-LETTERED AT$/);
    for (const id of ids)
      expect(table.stdout).toMatch(new RegExp(`${id}\\s+shop\\s+billing\\s+billing\\.charge\\s+1/1\\s+\\d{4}-`));
    expect(lines.at(-1)).toBe("(3 total)");
  });

  test("replay re-queues a dead letter as a new activation a worker can claim", async () => {
    const r = await cli(["replay", ids[0]!, "--broker", broker.address, "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const { id, newId } = JSON.parse(r.stdout) as { id: string; newId: string };
    expect(id).toBe(ids[0]!);
    expect(newId).not.toBe("");

    const { consumer } = brokerClients(broker.port, SECRET);
    const { task } = await consumer.getTask({ application: "shop", namespace: "billing" });
    expect(task?.id).toBe(newId);
    expect(task?.taskname).toBe("billing.charge");

    const listing = await listJson();
    expect(listing.deadLetters.map((d) => d.id)).not.toContain(ids[0]!);
    expect(listing.total).toBe(2);
  });

  test("discard removes one; unknown ids are reported with exit 1", async () => {
    const r = await cli(["discard", ids[1]!, "--broker", broker.address]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`discarded ${ids[1]}\n`);
    const listing = await listJson();
    expect(listing.deadLetters.map((d) => d.id)).toEqual([ids[2]!]);

    const again = await cli(["replay", ids[1]!, "--broker", broker.address]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`taskplatform deadletters: no dead letter ${ids[1]}\n`);
  });

  test("a wrong secret is rejected by the broker; a dead broker and bad usage are clear errors", async () => {
    const wrong = await cli(["list", "--broker", broker.address], {
      TASKBROKER_GRPC_SHARED_SECRET: '["not-the-secret"]',
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("Unauthenticated");
    expect(wrong.stderr).not.toContain("not-the-secret");

    const closed = await cli(["list", "--broker", "127.0.0.1:1"]);
    expect(closed.code).toBe(1);
    expect(closed.stderr).toContain("cannot reach the broker at 127.0.0.1:1");

    const usage = await cli(["replay", "--broker", broker.address]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("replay takes exactly one dead-letter id");
  });

  test("unsigned requests are refused by a broker with secrets (the CLI signs, others must too)", async () => {
    const { consumer } = brokerClients(broker.port);
    const err = await consumer.getTask({}).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
  });
});
