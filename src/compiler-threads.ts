// Runs the JavaScript engine's compiler threads at the lowest CPU priority
// (nice 19), so they take what the event loops leave instead of competing with
// them. JavaScriptCore compiles hot functions on background threads
// ("JITWorker"); its optimizing tier takes several ms per function and keeps
// compiling for many seconds into a steady load. On a small machine such a
// compilation holds a core while the broker's or the worker's event loop, or a
// task thread, waits to be scheduled: at 500 tasks/s on 2 cores that made up a
// large part of the p99 enqueue-to-start latency. Measured here (Bun 1.4.5,
// bench/e2e.ts, three interleaved pairs): p99 2.13-2.65 ms with the compiler
// threads at nice 19 against 2.61-5.27 ms without; nothing else changes: the
// code still gets compiled, in the idle time a core has. Linux only
// (/proc/self/task and per-thread setpriority); elsewhere this does nothing.
// Compiler threads start when there is first something to compile, so the
// threads are looked for again every few seconds (a directory listing).
import { readdirSync, readFileSync } from "node:fs";
import { setPriority } from "node:os";

const NAMES = new Set(["JITWorker"]);
const NICE = 19;
const RESCAN_MS = 5000;

let started = false;

/** Starts lowering the compiler threads' priority in this process (once; later calls do nothing). */
export function deprioritizeCompilerThreads(): void {
  if (started || process.platform !== "linux") return;
  started = true;
  const lowered = new Set<string>();
  const scan = () => {
    let tids: string[];
    try {
      tids = readdirSync("/proc/self/task");
    } catch {
      return; // no /proc: nothing to do
    }
    for (const tid of tids) {
      if (lowered.has(tid)) continue;
      try {
        if (!NAMES.has(readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim())) continue;
        setPriority(Number(tid), NICE);
        lowered.add(tid);
      } catch {
        // The thread ended meanwhile, or the platform refuses: it runs at its priority.
      }
    }
  };
  scan();
  setInterval(scan, RESCAN_MS).unref();
}
