// taskplatform.v1.AdminService: depths, one activation, local dead letters.
// Read-mostly calls for the CLI and dashboard; backed directly by the store.
import { Code, ConnectError } from "@connectrpc/connect";
import type { ServiceImpl } from "@connectrpc/connect";
import type { AdminService } from "../gen/taskplatform/v1/admin_pb.ts";
import type { DeadLetter, InflightStore } from "../store/types.ts";

const DEFAULT_LIST_LIMIT = 100;
const MAX_LIST_LIMIT = 10_000;
/** Activation bytes per ListDeadLetters answer: under the 4 MiB default receive limit of gRPC clients. */
const PAGE_BYTES = 3 * 1024 * 1024;

function deadLetterOut(d: DeadLetter) {
  return {
    id: d.id,
    namespace: d.namespace,
    taskname: d.taskname,
    application: d.application,
    deadLetteredAtUnix: d.deadLetteredAtMs / 1000,
    activation: d.activation,
  };
}

function storageCall<T>(operation: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new ConnectError(
      `storage failure during ${operation}: ${err instanceof Error ? err.message : String(err)}`,
      Code.Internal,
    );
  }
}

/** What AdminService asks of the store: depths, one activation, the local dead letters. */
export type AdminStore = Pick<
  InflightStore,
  | "counts"
  | "depthsByNamespace"
  | "oldestPendingReceivedAtMs"
  | "getActivation"
  | "listDeadLetters"
  | "replayDeadLetter"
  | "discardDeadLetter"
>;

export function adminServiceImpl(store: AdminStore, now: () => number = Date.now): ServiceImpl<typeof AdminService> {
  return {
    async getDepths() {
      return storageCall("GetDepths", () => {
        const counts = store.counts();
        const oldest = store.oldestPendingReceivedAtMs();
        return {
          totals: Object.entries(counts).map(([state, count]) => ({ state, namespace: "", count: BigInt(count) })),
          byNamespace: store
            .depthsByNamespace()
            .map((d) => ({ state: d.state, namespace: d.namespace, count: BigInt(d.count) })),
          oldestPendingAgeSeconds: oldest === null ? 0 : Math.max(0, (now() - oldest) / 1000),
        };
      });
    },
    async getActivation(req) {
      const row = storageCall("GetActivation", () => store.getActivation(req.id));
      if (row === null) throw new ConnectError(`no activation with id ${JSON.stringify(req.id)}`, Code.NotFound);
      return {
        activation: row.activation,
        state: row.state,
        processingAttempts: row.processingAttempts,
        processingDeadlineUnix: row.processingDeadlineMs === null ? 0 : row.processingDeadlineMs / 1000,
        topic: row.origin?.topic ?? "",
        partition: row.origin?.partition ?? 0,
        offset: row.origin ? BigInt(row.origin.offset) : 0n,
      };
    },
    async listDeadLetters(req) {
      const limit = Math.min(req.limit === 0 ? DEFAULT_LIST_LIMIT : req.limit, MAX_LIST_LIMIT);
      // Bounded by bytes as well as rows: 30 dead letters of 12 MiB were 2.6 GB of RSS as one answer.
      const page = storageCall("ListDeadLetters", () =>
        store.listDeadLetters({ limit, maxBytes: PAGE_BYTES, ...(req.afterId ? { afterId: req.afterId } : {}) }),
      );
      return {
        deadLetters: page.items.map(deadLetterOut),
        total: BigInt(page.total),
        nextAfterId: page.nextAfter ?? "",
      };
    },
    async replayDeadLetter(req) {
      const newId = storageCall("ReplayDeadLetter", () => store.replayDeadLetter(req.id));
      if (newId === null) throw new ConnectError(`no dead letter with id ${JSON.stringify(req.id)}`, Code.NotFound);
      return { newId };
    },
    async discardDeadLetter(req) {
      const found = storageCall("DiscardDeadLetter", () => store.discardDeadLetter(req.id));
      if (!found) throw new ConnectError(`no dead letter with id ${JSON.stringify(req.id)}`, Code.NotFound);
      return {};
    },
  };
}
