// Loading the user's task modules. They import the SDK as "taskplatform" (and
// "taskplatform/producer"); a runtime plugin maps those names to this
// process's own SDK instance, so the
// tasks they register land in the registry the worker reads, also in the
// compiled binary (where no node_modules/taskplatform exists on disk).
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as sdk from "../sdk/index.ts";

let pluginInstalled = false;

export function installSdkAlias(): void {
  if (pluginInstalled) return;
  pluginInstalled = true;
  Bun.plugin({
    name: "taskplatform-sdk",
    setup(build) {
      build.module("taskplatform", () => ({ exports: { ...sdk }, loader: "object" }));
      // Loaded on first use only: most task modules never build their own producer.
      build.module("taskplatform/producer", async () => ({
        exports: { ...(await import("../sdk/producers.ts")) },
        loader: "object",
      }));
    },
  });
}

/** Path-like entries (containing a slash or ending in .ts/.js) resolve against the current directory. */
export function moduleSpecifier(entry: string, cwd = process.cwd()): string {
  if (entry.startsWith("file:")) return entry;
  const pathLike = entry.includes("/") || /\.(m?[jt]s|tsx?)$/.test(entry);
  if (!pathLike) return entry;
  return pathToFileURL(isAbsolute(entry) ? entry : resolve(cwd, entry)).href;
}

export async function loadTaskModules(entries: string[]): Promise<void> {
  installSdkAlias();
  for (const entry of entries) {
    try {
      await import(moduleSpecifier(entry));
    } catch (err) {
      throw new Error(`cannot load task module ${entry}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
