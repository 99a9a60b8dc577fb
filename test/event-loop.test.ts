// The broker's event-loop monitor (runtime_metrics_interval): a broker
// process held still for 400 ms (SIGSTOP, then SIGCONT) reports that hold as
// a stall, in the log and in /metrics, and as the worst delay of its window.
import { afterAll, expect, test } from "bun:test";
import { spawnBroker, type BrokerProcess } from "./support/broker-process.ts";
import { parsePrometheusText, valueOf } from "./support/prom-text.ts";

let broker: BrokerProcess;
afterAll(async () => {
  await broker?.stop();
});

test("a 400 ms hold of the event loop is logged and counted as a stall", async () => {
  broker = await spawnBroker({
    TASKBROKER_ADMIN_ENABLED: "true",
    TASKBROKER_ADMIN_HOST: "127.0.0.1",
    TASKBROKER_ADMIN_PORT: "0",
    TASKBROKER_RUNTIME_METRICS_INTERVAL: "2000",
  });
  const metrics = async () =>
    parsePrometheusText(await (await fetch(`http://127.0.0.1:${broker.adminPort}/metrics`)).text());
  expect(valueOf(await metrics(), "taskbroker_event_loop_stalls_total")).toBe(0);
  process.kill(broker.proc.pid, "SIGSTOP");
  const held = performance.now();
  while (performance.now() - held < 400) await Bun.sleep(20);
  process.kill(broker.proc.pid, "SIGCONT");
  const line = await broker.waitForLog(/event_loop_stalled delay_ms=(\d+)/);
  const ms = Number(/delay_ms=(\d+)/.exec(line)![1]);
  expect(ms).toBeGreaterThanOrEqual(300);
  expect(ms).toBeLessThan(5000);
  expect(valueOf(await metrics(), "taskbroker_event_loop_stalls_total")).toBe(1);
  // The gauge is published when the 2 s window that saw the hold ends, and holds its worst delay for the next 2 s.
  const until = performance.now() + 6000;
  let worst = 0;
  while (worst < 0.3 && performance.now() < until) {
    worst = valueOf(await metrics(), "taskbroker_event_loop_delay_max_seconds") ?? 0;
    if (worst < 0.3) await Bun.sleep(100);
  }
  expect(worst).toBeGreaterThanOrEqual(0.3);
});
