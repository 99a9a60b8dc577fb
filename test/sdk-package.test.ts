// The SDK as a separate application meets it: `npm run pack:sdk` builds the
// tarball, one `npm install <tarball>` puts it into a fresh folder outside
// the repository, the guide's examples (examples/sdk/) are copied there,
// type-checked against the packed .d.ts and compiled; then the producer runs
// under Node and under Bun against a broker process, a worker runs the same
// task module (mapping "taskplatform" to its own SDK), and the eager-mode
// test example passes under both runtimes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { spawnBroker, tempDir, type BrokerProcess } from "./support/broker-process.ts";
import { spawnWorker, waitFor, type WorkerProcess } from "./support/worker-process.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const stops: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
});

function run(cmd: string[], cwd: string, env: Record<string, string> = {}) {
  const r = Bun.spawnSync(cmd, { cwd, env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString();
  const err = r.stderr.toString();
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${r.exitCode}\n${out}\n${err}`);
  return { out, err };
}

let app: string;
let broker: BrokerProcess;
let installLog: string;

beforeAll(async () => {
  const packed = run([BUN, "scripts/pack-sdk.ts"], ROOT).out.trim().split("\n").pop()!;
  expect(packed).toEndWith(".tgz");
  app = tempDir("taskplatform-app-");
  expect(app.startsWith(ROOT)).toBe(false);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "shop", private: true, type: "module" }));
  // The one install command the guide gives; dependencies come from the local npm cache that `npm ci` filled.
  const install = run(["npm", "install", "--prefer-offline", "--no-audit", "--no-fund", packed], app);
  installLog = install.out + install.err;
  for (const f of ["tasks.ts", "produce.ts", "eager.ts", "schedules.ts"])
    copyFileSync(join(ROOT, "examples/sdk", f), join(app, f));
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        rewriteRelativeImportExtensions: true,
        // The package's .d.ts were emitted with Node's types only (tsconfig.sdk.json), so they cannot name Bun's.
        skipLibCheck: true,
        types: [],
        outDir: ".",
      },
      files: ["tasks.ts", "produce.ts", "eager.ts", "schedules.ts"],
    }),
  );
  broker = await spawnBroker();
  stops.push(() => broker.stop("SIGKILL"));
}, 60_000);

describe("the packed SDK in a separate application", () => {
  test("installs with one npm command, without warnings", () => {
    expect(existsSync(join(app, "node_modules/taskplatform/package.json"))).toBe(true);
    expect(installLog).not.toMatch(/npm warn/i);
  });

  test("its types check the guide's examples (strict, NodeNext) and compile them to JavaScript", () => {
    // Only `node:` types come from outside the package: @types/node is what a Node app has anyway.
    run(
      [
        join(ROOT, "node_modules/.bin/tsc"),
        "-p",
        ".",
        "--typeRoots",
        join(ROOT, "node_modules/@types"),
        "--types",
        "node",
      ],
      app,
    );
    expect(existsSync(join(app, "produce.js"))).toBe(true);
  }, 30_000);

  test("eager mode tests pass under Node and under Bun; the schedules module validates", () => {
    run(["node", "schedules.js"], app);
    expect(run(["node", "eager.js"], app, { SHOP_OUTBOX: join(app, "eager-node.log") }).out).toContain(
      "eager checks passed",
    );
    expect(run([BUN, "eager.ts"], app, { SHOP_OUTBOX: join(app, "eager-bun.log") }).out).toContain(
      "eager checks passed",
    );
  }, 20_000);

  test("the producer runs under Node and under Bun; a worker runs what they produced", async () => {
    const env = { TASKWORKER_PRODUCE_ADDRESS: broker.address };
    const fromNode: string[] = JSON.parse(run(["node", "produce.js"], app, env).out);
    const fromBun: string[] = JSON.parse(run([BUN, "produce.ts"], app, env).out);
    expect(fromNode).toHaveLength(5);
    expect(fromBun).toHaveLength(5);
    expect(new Set([...fromNode, ...fromBun]).size).toBe(10);

    const outbox = join(app, "outbox.log");
    const worker: WorkerProcess = await spawnWorker(
      [
        "--tasks",
        join(app, "tasks.ts"),
        "--rpc-host-list",
        broker.address,
        "--concurrency",
        "4",
        "--at-most-once-path",
        join(app, "amo.sqlite"),
      ],
      { SHOP_OUTBOX: outbox },
    );
    stops.push(() => worker.stop("SIGKILL"));
    const lines = () => (existsSync(outbox) ? readFileSync(outbox, "utf8").trim().split("\n") : []);
    await waitFor("both producers' tasks ran", () => lines().length === 10, 20_000);
    expect(lines().sort()).toEqual(
      [
        "welcome 42 en tenant=acme",
        "welcome 7 de tenant=-",
        "digest 42 attempt 1",
        "charge order-1001 2599",
        "inventory sku-7",
      ]
        .flatMap((l) => [l, l])
        .sort(),
    );
    expect(await worker.executions({ outcome: "retry" })).toBe(4);
  }, 40_000);
});
