// `taskplatform inspect depths | get <id> | deadletters | replay <id> | discard <id>`:
// what an operator asks a running broker, over its AdminService RPC
// (--broker host:port, the default) or its admin HTTP API (--admin URL).
// Tables for people by default; --json prints one JSON document on stdout.
import { Code, ConnectError } from "@connectrpc/connect";
import { brokerConfigSchema } from "../config/broker.ts";
import { loadCommand } from "../config/command.ts";
import { INSPECT_COMMAND } from "../config/commands.ts";
import { commandHelp } from "../config/help.ts";
import { resolveBrokerConfig } from "../config/load.ts";
import { ConfigError } from "../config/source.ts";
import {
  AdminHttpError,
  httpSource,
  rpcSource,
  type ActivationDetail,
  type DeadLetterRow,
  type DepthsView,
  type InspectSource,
} from "./inspect-sources.ts";

const USAGE = `Usage: taskplatform inspect depths                      depth per state and namespace
       taskplatform inspect get <id>                    one stored activation, decoded
       taskplatform inspect deadletters [--limit N] [--after ID]
       taskplatform inspect replay <id>                 re-queue a dead letter
       taskplatform inspect discard <id>                delete a dead letter`;

export function inspectHelp(): string {
  return commandHelp(
    INSPECT_COMMAND,
    USAGE.slice("Usage: ".length),
    "What an operator asks a running broker, over its AdminService RPC (--broker, the default)\nor its admin HTTP API (--admin). Tables for people by default, --json for scripts.",
  );
}

type Options = NonNullable<ReturnType<typeof parseOptions>>;
function parseOptions(argv: string[]) {
  const loaded = loadCommand(INSPECT_COMMAND, argv, {});
  return loaded.help ? null : { ...loaded.config, positional: loaded.positional };
}

const STATES = ["pending", "delay", "processing", "claimed", "retry", "failure", "complete"];

/** Fixed-width columns sized to the widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((x, i) => (i === r.length - 1 ? x : x.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n") + "\n";
}

export function formatDepths(d: DepthsView): string {
  const byNs = new Map<string, Record<string, number>>();
  for (const x of d.byNamespace) {
    const m = byNs.get(x.namespace) ?? {};
    m[x.state] = (m[x.state] ?? 0) + x.count;
    byNs.set(x.namespace, m);
  }
  const rows = [...byNs.keys()].sort().map((ns) => [ns, ...STATES.map((s) => String(byNs.get(ns)![s] ?? 0))]);
  rows.push(["(total)", ...STATES.map((s) => String(d.totals[s] ?? 0))]);
  return (
    table(["NAMESPACE", ...STATES.map((s) => s.toUpperCase())], rows) +
    `oldest pending: ${d.oldestPendingAgeSeconds.toFixed(1)} s\n`
  );
}

const iso = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString());

export function formatActivation(a: ActivationDetail): string {
  const lines: Array<[string, string]> = [
    ["id", a.id],
    ["state", a.state],
    ["application", a.application],
    ["namespace", a.namespace],
    ["taskname", a.taskname],
    ["attempts", `${a.attempts}${a.maxAttempts ? ` of ${a.maxAttempts}` : ""}`],
    ["processing attempts", String(a.processingAttempts)],
    ["received at", iso(a.receivedAtMs)],
    ["processing deadline", iso(a.processingDeadlineMs)],
    ["origin", a.origin ? `${a.origin.topic}[${a.origin.partition}]@${a.origin.offset}` : "ingest RPC"],
    ["headers", JSON.stringify(a.headers)],
    ["parameters", a.parameters ? JSON.stringify(a.parameters) : `undecodable: ${a.parametersError ?? "?"}`],
    ["size", `${a.sizeBytes} bytes`],
  ];
  const w = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n") + "\n";
}

export function formatDeadLetters(items: DeadLetterRow[], total: number): string {
  if (items.length === 0) return `no dead letters (total ${total})\n`;
  const clip = (s: string) => (s.length > 60 ? s.slice(0, 57) + "..." : s);
  const rows = items.map((d) => [
    d.id,
    d.namespace,
    d.taskname,
    String(d.attempts + 1), // runs: the attempts field counts from 0
    iso(d.deadLetteredAtMs),
    clip(d.parameters === null ? `undecodable: ${d.parametersError ?? "?"}` : JSON.stringify(d.parameters)),
  ]);
  const shown = items.length < total ? `${items.length} of ${total} shown` : `${total} total`;
  return table(["ID", "NAMESPACE", "TASKNAME", "RUNS", "DEAD-LETTERED AT", "PARAMETERS"], rows) + `(${shown})\n`;
}

class NotFound extends Error {}

async function run(source: InspectSource, args: Options, json: boolean): Promise<number> {
  const [action, ...rest] = args.positional;
  const out = (text: string) => process.stdout.write(text);
  const oneId = () => {
    if (rest.length !== 1) throw new ConfigError(`${action} takes exactly one id`);
    return rest[0]!;
  };
  switch (action) {
    case "depths": {
      if (rest.length) throw new ConfigError(`unexpected argument "${rest[0]}"`);
      const d = await source.depths();
      out(json ? JSON.stringify(d) + "\n" : formatDepths(d));
      return 0;
    }
    case "get": {
      const id = oneId();
      const a = await source.activation(id);
      if (!a) throw new NotFound(`no activation ${id} in the store`);
      out(json ? JSON.stringify(a) + "\n" : formatActivation(a));
      return 0;
    }
    case "deadletters": {
      if (rest.length) throw new ConfigError(`unexpected argument "${rest[0]}"`);
      const page = await source.deadLetters(args.limit, args.after);
      out(json ? JSON.stringify(page) + "\n" : formatDeadLetters(page.items, page.total));
      return 0;
    }
    case "replay": {
      const id = oneId();
      const newId = await source.replay(id);
      if (newId === null) throw new NotFound(`no dead letter ${id}`);
      out(json ? JSON.stringify({ id, newId }) + "\n" : `replayed ${id} as new activation ${newId}\n`);
      return 0;
    }
    case "discard": {
      const id = oneId();
      if (!(await source.discard(id))) throw new NotFound(`no dead letter ${id}`);
      out(json ? JSON.stringify({ id, discarded: true }) + "\n" : `discarded ${id}\n`);
      return 0;
    }
    default:
      throw new ConfigError(action ? `unknown subcommand "${action}"` : "missing subcommand");
  }
}

function chooseSource(args: Options, env: Record<string, string | undefined>): InspectSource {
  const admin = args.admin;
  if (admin) {
    if (args.broker !== undefined) throw new ConfigError("give --broker or --admin, not both");
    return httpSource(admin, args.token ?? env.TASKBROKER_ADMIN_TOKEN);
  }
  const configPath = args.config;
  if (configPath) {
    const config = resolveBrokerConfig(env, configPath).config;
    return rpcSource(
      args.broker ?? `127.0.0.1:${config.grpc_port}`,
      config.grpc_shared_secret,
      args.token ?? config.admin_token,
    );
  }
  const port = env.TASKBROKER_GRPC_PORT && env.TASKBROKER_GRPC_PORT !== "0" ? env.TASKBROKER_GRPC_PORT : "50051";
  const secrets = brokerConfigSchema.shape.grpc_shared_secret.safeParse(env.TASKBROKER_GRPC_SHARED_SECRET);
  if (!secrets.success)
    throw new ConfigError("TASKBROKER_GRPC_SHARED_SECRET=*** is invalid: expected a JSON array of strings");
  return rpcSource(args.broker ?? `127.0.0.1:${port}`, secrets.data, args.token ?? env.TASKBROKER_ADMIN_TOKEN);
}

export async function inspectCommand(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let source: InspectSource | undefined;
  try {
    const args = parseOptions(argv);
    if (!args) {
      process.stdout.write(inspectHelp());
      return 0;
    }
    source = chooseSource(args, env);
    return await run(source, args, args.json);
  } catch (err) {
    const fail = (message: string, code: number) => {
      process.stderr.write(`taskplatform inspect: ${message}\n`);
      return code;
    };
    if (err instanceof ConfigError) return fail(`${err.message}\n${USAGE}`, 2);
    if (err instanceof NotFound) return fail(err.message, 1);
    if (err instanceof AdminHttpError) return fail(err.message, 1);
    if (err instanceof ConnectError) {
      if (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded) {
        return fail(`cannot reach ${source?.endpoint}: ${err.rawMessage}`, 1);
      }
      return fail(`${Code[err.code]}: ${err.rawMessage}`, 1);
    }
    return fail(`cannot reach ${source?.endpoint ?? "the broker"}: ${(err as Error).message}`, 1);
  }
}
