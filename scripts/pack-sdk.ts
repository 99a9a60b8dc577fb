// Builds the SDK package an application installs with one command
// (`npm install <repo>/dist/taskplatform-<version>.tgz`): tsc emits the SDK
// entries and everything they import as ESM JavaScript with .d.ts files
// (tsconfig.sdk.json), this script writes the package.json (its dependencies
// are exactly the packages the emitted code imports, at the versions this
// repository's lockfile pins) and a README (docs/sdk.md), and `npm pack` makes the
// tarball. Runs under Bun or Node. Prints the tarball's absolute path last.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "dist", "sdk");
const rootPkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));

/** Packages loaded at run time through a computed specifier (see src/activation/zstd.ts), invisible to the import scan. */
const RUNTIME_LOADED = ["@bokuweb/zstd-wasm"];

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
// types: ["node"] in tsconfig.sdk.json: code that reaches for Bun's globals fails to compile here.
execFileSync(join(root, "node_modules/.bin/tsc"), ["-p", join(root, "tsconfig.sdk.json")], { stdio: "inherit" });

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

// Every bare specifier in the emitted JavaScript, reduced to its package name.
const used = new Set<string>(RUNTIME_LOADED);
for (const file of files(out).filter((f) => f.endsWith(".js"))) {
  const text = readFileSync(file, "utf8").replace(/^\s*(\/\/|\*|\/\*).*$/gm, "");
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"([^".][^"]*)"/g)) {
    const spec = m[1]!;
    if (spec.startsWith("node:")) continue;
    used.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);
  }
}
const dependencies: Record<string, string> = {};
for (const name of [...used].sort()) {
  if (!rootPkg.dependencies?.[name])
    throw new Error(`the SDK imports ${name}, which is not a dependency in package.json`);
  // The exact version this repository tested with (and `npm ci` put in the local cache).
  dependencies[name] = lock.packages[`node_modules/${name}`].version;
}

const entry = (name: string) => ({ types: `./dist/sdk/${name}.d.ts`, default: `./dist/sdk/${name}.js` });
const pkg = {
  name: rootPkg.name,
  version: rootPkg.version,
  description: "taskplatform's task SDK: define tasks, produce them from Node or Bun, test them eagerly",
  type: "module",
  license: rootPkg.license ?? "UNLICENSED",
  engines: rootPkg.engines,
  exports: { ".": entry("index"), "./producer": entry("producers") },
  types: "./dist/sdk/index.d.ts",
  files: ["dist", "README.md"],
  dependencies,
};
writeFileSync(join(out, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
const guide = join(root, "docs", "sdk.md");
writeFileSync(join(out, "README.md"), existsSync(guide) ? readFileSync(guide, "utf8") : "# taskplatform SDK\n");

const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const packed = execFileSync(npm, ["pack", "--json", "--pack-destination", join(root, "dist")], {
  cwd: out,
  encoding: "utf8",
});
const [{ filename }] = JSON.parse(packed) as Array<{ filename: string }>;
console.log(join(root, "dist", filename));
