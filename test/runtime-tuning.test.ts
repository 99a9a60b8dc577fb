// The runtime settings the broker and the worker run with (docs/operating.md
// "Runtime settings"): the broker re-executes itself once, in place, with
// BUN_JSC_useFTLJIT=0 unless told otherwise, and says so at start-up; the
// engine's compiler threads of a running broker end up at nice 19. The plan
// for the re-execution is a pure function, checked directly; the rest on real
// broker processes through /proc.
import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { tuningReexec } from "../src/cli/runtime-tuning.ts";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";

const proc = { execPath: "/usr/bin/bun", execArgv: ["--smol"], argv: ["/usr/bin/bun", "/app/src/main.ts", "broker"] };

describe("the re-execution plan", () => {
  test("the broker gets BUN_JSC_useFTLJIT=0 added to its environment, with its arguments unchanged", () => {
    const plan = tuningReexec("broker", { PATH: "/bin", TASKBROKER_GRPC_PORT: "1" }, proc);
    expect(plan?.env).toEqual({ PATH: "/bin", TASKBROKER_GRPC_PORT: "1", BUN_JSC_useFTLJIT: "0" });
    expect(plan?.argv).toEqual(["/usr/bin/bun", "--smol", "/app/src/main.ts", "broker"]);
  });

  test("a standalone executable is re-executed with the user's arguments right after it", () => {
    const compiled = {
      execPath: "/opt/taskplatform",
      execArgv: [],
      argv: ["bun", "/$bunfs/root/taskplatform", "broker", "-c", "f.yml"],
    };
    expect(tuningReexec("broker", {}, compiled)?.argv).toEqual(["/opt/taskplatform", "broker", "-c", "f.yml"]);
  });

  test("no re-execution when the setting is there already, when turned off, or for other commands", () => {
    expect(tuningReexec("broker", { BUN_JSC_useFTLJIT: "1" }, proc)).toBeNull();
    expect(tuningReexec("broker", { TASKPLATFORM_BUN_TUNING: "off" }, proc)).toBeNull();
    expect(tuningReexec("worker", {}, proc)).toBeNull();
    expect(tuningReexec("inspect", {}, proc)).toBeNull();
  });
});

const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");

/** [thread name, nice] of every thread of a process. */
function threadsOf(pid: number): [string, number][] {
  const out: [string, number][] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      out.push([comm, Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16])]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

describe.if(process.platform === "linux")("a running broker", () => {
  const brokers: BrokerProcess[] = [];
  afterAll(async () => {
    for (const b of brokers) await b.stop();
  });

  test("runs in place (same PID) with the setting, and logs it at start-up", async () => {
    const b = await spawnBroker({});
    brokers.push(b);
    expect(environOf(b.proc.pid)).toContain("BUN_JSC_useFTLJIT=0");
    expect(b.logs()).toMatch(/INFO {2}runtime bun=\S+ BUN_JSC_useFTLJIT=0/);
  });

  test("TASKPLATFORM_BUN_TUNING=off starts it as it is", async () => {
    const off = await spawnBroker({ TASKPLATFORM_BUN_TUNING: "off" });
    brokers.push(off);
    expect(environOf(off.proc.pid)).not.toContain("BUN_JSC_useFTLJIT=0");
    expect(off.logs()).toContain("BUN_JSC_useFTLJIT=(unset)");
  });

  test("the engine's compiler threads run at nice 19, the event loop at 0", async () => {
    const b = await spawnBroker({});
    brokers.push(b);
    // Compiler threads start when there is something to compile and are looked for every 5 s.
    const until = Date.now() + 15_000;
    let threads = threadsOf(b.proc.pid);
    const lowered = () => {
      const jit = threads.filter(([name]) => name === "JITWorker");
      return jit.length > 0 && jit.every(([, nice]) => nice === 19);
    };
    while (!lowered() && Date.now() < until) {
      await Bun.sleep(200);
      threads = threadsOf(b.proc.pid);
    }
    expect(lowered()).toBe(true);
    const main = threads.find(([name]) => name === "bun" || name === "bun.exe");
    expect(main?.[1]).toBe(0);
  });
});
