// `taskplatform deadletters list|replay <id>|discard <id>`: the local
// dead-letter table of a running broker (no Kafka: failed DEADLETTER
// activations land there), through its AdminService. A table for people by
// default, --json (one document on stdout) for scripts.
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { brokerConfigSchema } from "../config/broker.ts";
import { loadCommand } from "../config/command.ts";
import { DEADLETTERS_COMMAND } from "../config/commands.ts";
import { commandHelp } from "../config/help.ts";
import { resolveBrokerConfig } from "../config/load.ts";
import { ConfigError } from "../config/source.ts";
import { TaskActivationSchema } from "../gen/sentry_protos/taskbroker/v1/taskbroker_pb.ts";
import type { DeadLetter } from "../gen/taskplatform/v1/admin_pb.ts";
import { adminClient } from "../connect/client.ts";

const USAGE = `Usage: taskplatform deadletters list [--limit N] [--after ID] [--broker host:port] [-c broker.yaml] [--json]
       taskplatform deadletters replay <id> [--broker host:port] [--json]
       taskplatform deadletters discard <id> [--broker host:port] [--json]`;

export function deadlettersHelp(): string {
  return commandHelp(
    DEADLETTERS_COMMAND,
    USAGE.slice("Usage: ".length),
    "The dead letters of a running broker (no Kafka: failed DEADLETTER activations land there),\nthrough its AdminService. A table for people by default, --json for scripts.",
  );
}

type Options = ReturnType<typeof parseOptions>;
function parseOptions(argv: string[]) {
  const loaded = loadCommand(DEADLETTERS_COMMAND, argv, {});
  return loaded.help ? null : { ...loaded.config, positional: loaded.positional };
}

/** A dead letter as shown to the operator, task fields decoded from the stored activation. */
export interface DeadLetterView {
  id: string;
  namespace: string;
  taskname: string;
  application: string;
  attempts: number | null;
  maxAttempts: number | null;
  deadLetteredAt: string;
  receivedAt: string | null;
}

export function viewDeadLetter(d: DeadLetter): DeadLetterView {
  let attempts: number | null = null;
  let maxAttempts: number | null = null;
  let receivedAt: string | null = null;
  try {
    const a = fromBinary(TaskActivationSchema, d.activation);
    attempts = a.retryState?.attempts ?? 0;
    maxAttempts = a.retryState?.maxAttempts ?? null;
    if (a.receivedAt)
      receivedAt = new Date(Number(a.receivedAt.seconds) * 1000 + a.receivedAt.nanos / 1e6).toISOString();
  } catch {
    // Undecodable bytes are exactly the kind of thing that ends up here: show the row anyway.
  }
  return {
    id: d.id,
    namespace: d.namespace,
    taskname: d.taskname,
    application: d.application,
    attempts,
    maxAttempts,
    deadLetteredAt: new Date(d.deadLetteredAtUnix * 1000).toISOString(),
    receivedAt,
  };
}

/**
 * Fixed-width text table; columns sized to their widest cell. RUNS counts the
 * runs (the activation's attempts field counts from 0: attempts 1 of max 2 is
 * the second of two runs); --json keeps the raw field.
 */
export function formatTable(rows: DeadLetterView[], total: number): string {
  if (rows.length === 0) return `no dead letters (total ${total})\n`;
  const header = ["ID", "APPLICATION", "NAMESPACE", "TASKNAME", "RUNS", "DEAD-LETTERED AT"];
  const cells = rows.map((r) => [
    r.id,
    r.application,
    r.namespace,
    r.taskname,
    r.attempts === null ? "?" : `${r.attempts + 1}${r.maxAttempts !== null ? `/${r.maxAttempts}` : ""}`,
    r.deadLetteredAt,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(widths[i]!))).join("  ");
  const shown = rows.length < total ? `${rows.length} of ${total} shown` : `${total} total`;
  return [line(header), ...cells.map(line), `(${shown})`].join("\n") + "\n";
}

/** An unreachable (black-holed) broker must not hang a script forever. */
const CALL = { timeoutMs: 15_000 };

function brokerAddress(flag: string | undefined, env: Record<string, string | undefined>): string {
  if (flag) return flag;
  const port = env.TASKBROKER_GRPC_PORT && env.TASKBROKER_GRPC_PORT !== "0" ? env.TASKBROKER_GRPC_PORT : "50051";
  return `127.0.0.1:${port}`;
}

function secretsFrom(env: Record<string, string | undefined>): string[] {
  const parsed = brokerConfigSchema.shape.grpc_shared_secret.safeParse(env.TASKBROKER_GRPC_SHARED_SECRET);
  if (!parsed.success)
    throw new ConfigError("TASKBROKER_GRPC_SHARED_SECRET=*** is invalid: expected a JSON array of strings");
  return parsed.data;
}

async function run(
  client: ReturnType<typeof adminClient>,
  action: string,
  args: NonNullable<Options>,
  json: boolean,
): Promise<number> {
  const out = (text: string) => process.stdout.write(text);
  const target = () => {
    const id = args.positional[1];
    if (!id || args.positional.length > 2) throw new ConfigError(`${action} takes exactly one dead-letter id`);
    return id;
  };
  switch (action) {
    case "list": {
      if (args.positional.length > 1) throw new ConfigError(`unexpected argument "${args.positional[1]}"`);
      const res = await client.listDeadLetters({ limit: args.limit, afterId: args.after ?? "" }, CALL);
      const rows = res.deadLetters.map(viewDeadLetter);
      const total = Number(res.total);
      out(json ? JSON.stringify({ total, deadLetters: rows }) + "\n" : formatTable(rows, total));
      return 0;
    }
    case "replay": {
      const id = target();
      const res = await client.replayDeadLetter({ id }, CALL);
      out(json ? JSON.stringify({ id, newId: res.newId }) + "\n" : `replayed ${id} as new activation ${res.newId}\n`);
      return 0;
    }
    case "discard": {
      const id = target();
      await client.discardDeadLetter({ id }, CALL);
      out(json ? JSON.stringify({ id, discarded: true }) + "\n" : `discarded ${id}\n`);
      return 0;
    }
    default:
      throw new ConfigError(action ? `unknown action "${action}"` : "missing action");
  }
}

export async function deadlettersCommand(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let args;
  let client;
  try {
    args = parseOptions(argv);
    if (!args) {
      process.stdout.write(deadlettersHelp());
      return 0;
    }
    const configPath = args.config;
    let address: string;
    let secrets: string[];
    let adminToken = env.TASKBROKER_ADMIN_TOKEN;
    if (configPath) {
      // The broker's own config file (and env): same port, secrets and admin token as the broker it describes.
      const config = resolveBrokerConfig(env, configPath).config;
      address = args.broker ?? `127.0.0.1:${config.grpc_port}`;
      secrets = config.grpc_shared_secret;
      adminToken = config.admin_token;
    } else {
      address = brokerAddress(args.broker, env);
      secrets = secretsFrom(env);
    }
    client = { address, rpc: adminClient(address, secrets, adminToken) };
    return await run(client.rpc, args.positional[0] ?? "", args, args.json);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`taskplatform deadletters: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    const e = ConnectError.from(err);
    if (e.code === Code.NotFound) {
      process.stderr.write(`taskplatform deadletters: no dead letter ${args?.positional[1] ?? ""}\n`);
    } else if (e.code === Code.Unavailable || e.code === Code.DeadlineExceeded) {
      process.stderr.write(
        `taskplatform deadletters: cannot reach the broker at ${client?.address}: ${e.rawMessage}\n`,
      );
    } else {
      process.stderr.write(`taskplatform deadletters: ${Code[e.code]}: ${e.rawMessage}\n`);
    }
    return 1;
  }
}
