// A task thread: loads the user's task modules, then runs activations sent by
// the main thread, many at a time, and posts their results back in batches.
// The main thread enforces deadlines by terminating the whole thread, which
// stops even synchronous infinite loops.
import { parentPort, workerData } from "node:worker_threads";
import type { RunResult } from "../sdk/execute.ts";
import { registeredApps } from "../sdk/app.ts";
import { runActivation } from "../sdk/execute.ts";
import { retriesOnDeadline } from "../sdk/retry.ts";
import { loadTaskModules } from "./modules.ts";
import type { FromThread, TaskMeta, ThreadInit, ToThread } from "./protocol.ts";

const port = parentPort;
if (!port) throw new Error("src/worker/thread.ts must run as a worker thread");
const init = workerData as ThreadInit;
for (const [k, v] of Object.entries(init.env)) process.env[k] = v;

const post = (msg: FromThread) => port.postMessage(msg);
const controllers = new Map<string, AbortController>();
let outbox: RunResult[] = [];
let flushScheduled = false;

function flush() {
  flushScheduled = false;
  const results = outbox;
  outbox = [];
  if (results.length > 0) post({ type: "results", results });
}

function finished(result: RunResult) {
  controllers.delete(result.id);
  outbox.push(result);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
}

port.on("message", (msg: ToThread) => {
  if (msg.type === "run") {
    for (const req of msg.runs) {
      const controller = new AbortController();
      controllers.set(req.id, controller);
      runActivation(req, controller.signal).then(finished, (err: unknown) =>
        finished({ id: req.id, status: 3, outcome: "failure", error: String(err), durationMs: 0 }),
      );
    }
  } else {
    for (const id of msg.ids) controllers.get(id)?.abort();
  }
});

try {
  await loadTaskModules(init.modules);
  const tasks: TaskMeta[] = [];
  for (const app of registeredApps()) {
    for (const ns of app.namespaces()) {
      for (const t of ns.tasks()) {
        tasks.push({
          application: app.name,
          namespace: ns.name,
          taskname: t.name,
          retriesOnDeadline: retriesOnDeadline(t.retry),
          retryDelaySec: t.retry.delaySec,
          atMostOnce: t.atMostOnce,
        });
      }
    }
  }
  post({ type: "ready", tasks });
} catch (err) {
  post({ type: "load_error", message: err instanceof Error ? err.message : String(err) });
}
