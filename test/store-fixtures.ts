// Shared by the store, upkeep and ingest tests: activation bytes built with
// the generated protobuf code, and a fresh SQLite file per test.
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TaskActivationSchema } from "../src/gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import { activationToRow } from "../src/store/row.ts";
import { openStore, type StoreOptions } from "../src/store/sqlite.ts";
import type { InflightStore, NewRow } from "../src/store/types.ts";

let counter = 0;

/** Activation bytes; defaults: unique id, namespace "ns", taskname "t", application "app". */
export function activationBytes(init: MessageInitShape<typeof TaskActivationSchema> = {}): Uint8Array {
  counter++;
  return toBinary(
    TaskActivationSchema,
    create(TaskActivationSchema, {
      id: `act${process.pid}x${counter}x${Math.random().toString(16).slice(2, 10)}`,
      namespace: "ns",
      taskname: "t",
      application: "app",
      processingDeadlineDuration: 10n,
      ...init,
    }),
  );
}

export function row(init: MessageInitShape<typeof TaskActivationSchema> = {}, nowMs = Date.now()): NewRow {
  return activationToRow(activationBytes(init), nowMs, { maxDelaySec: 3600 }, null);
}

export { timestampFromMs };

export interface TempStore {
  store: InflightStore;
  path: string;
  dir: string;
  reopen(): Promise<InflightStore>;
  cleanup(): Promise<void>;
}

/** A store on a real SQLite file in its own temp dir. */
export function tempStore(opts: Partial<StoreOptions> = {}): TempStore {
  const dir = mkdtempSync(join(tmpdir(), "tp-store-"));
  const path = join(dir, "inflight.sqlite");
  const open = () =>
    openStore({ path, synchronous: "normal", groupCommitWindowMs: 0, processingDeadlineGraceSec: 3, ...opts });
  const t: TempStore = {
    store: open(),
    path,
    dir,
    async reopen() {
      await t.store.close();
      t.store = open();
      return t.store;
    },
    async cleanup() {
      await t.store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}
