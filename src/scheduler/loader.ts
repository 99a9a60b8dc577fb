// Loading schedule definitions from where the user keeps them: a YAML or JSON
// file (a map of schedule name -> definition, optionally under a top-level
// `schedules` key), or a module (path or package name) exporting `schedules`
// (plain object or the result of `defineSchedules`). A module may import the
// user's task modules too; their registered options then shape the activations.
// As for the worker, "taskplatform" in those modules is this process's own SDK,
// not the application's installed copy, so the tasks land in the registry the
// scheduler reads.
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import YAML from "yaml";
import { normalizeSchedules, type Schedule, ScheduleDefinitionError } from "../sdk/schedules.ts";
import { installSdkAlias } from "../worker/modules.ts";

const DATA_FILE = /\.(ya?ml|json)$/i;

function unwrap(doc: unknown): unknown {
  if (doc && typeof doc === "object" && !Array.isArray(doc)) {
    const keys = Object.keys(doc);
    if (keys.length === 1 && keys[0] === "schedules") return (doc as { schedules: unknown }).schedules;
  }
  return doc;
}

function parseDataFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ScheduleDefinitionError(`cannot read schedules file ${path}: ${(err as Error).message}`);
  }
  try {
    return /\.json$/i.test(path) ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new ScheduleDefinitionError(`schedules file ${path} does not parse: ${(err as Error).message}`);
  }
}

/** Loads and validates the schedules named by `source`; throws ScheduleDefinitionError on any problem. */
export async function loadSchedules(source: string, cwd = process.cwd()): Promise<Schedule[]> {
  const path = isAbsolute(source) ? source : resolve(cwd, source);
  if (DATA_FILE.test(source)) return normalizeSchedules(unwrap(parseDataFile(path)));
  const specifier = existsSync(path) ? pathToFileURL(path).href : source;
  let mod: Record<string, unknown>;
  installSdkAlias();
  try {
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof ScheduleDefinitionError) throw err;
    throw new ScheduleDefinitionError(`cannot load schedules module ${source}: ${(err as Error).message}`);
  }
  const table = mod.schedules ?? mod.default;
  if (table === undefined) throw new ScheduleDefinitionError(`module ${source} exports no \`schedules\``);
  return normalizeSchedules(table);
}
