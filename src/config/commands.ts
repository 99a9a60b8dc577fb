// Options of the small commands (`deadletters`, `inspect`, `demo`): zod
// schemas with flags only, loaded by config/command.ts like the worker's and
// the scheduler's, so their mistakes read the same (`--limit="x" is invalid:
// expected an integer >= 1`) and their --help is generated the same way.
// They reach a running broker; -c names that broker's own config file, read
// with the broker's loader for its port and secrets.
import { z } from "zod";
import type { CommandSpec } from "./command.ts";
import { ADDRESS, count } from "./types.ts";

const brokerAddress = z
  .string()
  .regex(ADDRESS, "host:port")
  .optional()
  .describe(
    "AdminService on the broker's RPC port; default 127.0.0.1:$TASKBROKER_GRPC_PORT (or 50051), signed with TASKBROKER_GRPC_SHARED_SECRET when set.",
  )
  .meta({ flags: ["--broker"], valueName: "host:port", expect: "host:port" });
const brokerFile = z
  .string()
  .min(1)
  .optional()
  .describe("The broker's config file: its port and secrets are used (with the TASKBROKER_* environment).")
  .meta({ flags: ["--config", "-c"], valueName: "broker.yaml" });
const json = z
  .union([z.boolean(), z.enum(["true", "false"])])
  .transform((v) => v === true || v === "true")
  .default(false)
  .describe("Print one JSON document on stdout instead of a table.")
  .meta({ flags: ["--json"], expect: "true or false" });
const after = z
  .string()
  .min(1)
  .optional()
  .describe("List dead letters after this id (paging).")
  .meta({ flags: ["--after"], valueName: "ID" });

export const deadlettersSchema = z.object({
  broker: brokerAddress,
  config: brokerFile,
  limit: count
    .default(100)
    .describe("Most dead letters listed.")
    .meta({ flags: ["--limit"], valueName: "N" }),
  after,
  json,
});

export const DEADLETTERS_COMMAND: CommandSpec<typeof deadlettersSchema> = {
  command: "deadletters",
  schema: deadlettersSchema,
  positionals: true,
};

export const inspectSchema = z.object({
  broker: brokerAddress,
  admin: z
    .url()
    .optional()
    .describe("Ask the admin HTTP port instead, e.g. http://127.0.0.1:9090.")
    .meta({ flags: ["--admin"], valueName: "URL", expect: "a URL such as http://127.0.0.1:9090" }),
  token: z
    .string()
    .min(1)
    .optional()
    .describe("Bearer token of the admin HTTP port; default TASKBROKER_ADMIN_TOKEN.")
    .meta({ flags: ["--token"], valueName: "token" }),
  config: brokerFile,
  limit: count
    .default(50)
    .describe("Most dead letters listed.")
    .meta({ flags: ["--limit"], valueName: "N" }),
  after,
  json,
});

export const INSPECT_COMMAND: CommandSpec<typeof inspectSchema> = {
  command: "inspect",
  schema: inspectSchema,
  positionals: true,
};

export const demoSchema = z.object({
  examples: z
    .string()
    .min(1)
    .optional()
    .describe("Directory holding tasks.ts; default ./examples, or the one next to the sources.")
    .meta({ flags: ["--examples"], valueName: "DIR" }),
  seconds: z.coerce
    .number()
    .positive()
    .default(30)
    .describe("Longest the demo runs before summarising, seconds.")
    .meta({ flags: ["--seconds"], valueName: "N" }),
});

export const DEMO_COMMAND: CommandSpec<typeof demoSchema> = { command: "demo", schema: demoSchema };
