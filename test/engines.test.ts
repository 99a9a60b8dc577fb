// The Node version the project states (package.json engines, README) is one
// every installed dependency accepts, and every dependency with an install
// script is listed in allowScripts: together that is what keeps `npm ci`
// free of EBADENGINE and install-script warnings on the oldest Node we name.
import { describe, expect, test } from "bun:test";

const root = new URL("../", import.meta.url);
const pkg = await Bun.file(new URL("package.json", root)).json();
const lock = await Bun.file(new URL("package-lock.json", root)).json();
const readme = await Bun.file(new URL("README.md", root)).text();

/** ">=20" -> "20.0.0": the oldest Node the project claims to run on. */
function oldestNode(range: string): string {
  const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  if (!m) throw new Error(`package.json engines.node should be a ">=N" range, got ${range}`);
  return `${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}`;
}

describe("Node engine and dependencies", () => {
  const oldest = oldestNode(pkg.engines.node);

  test("the README names the same Node major as package.json engines", () => {
    expect(readme).toContain(`Node ${oldest.split(".")[0]}+`);
  });

  test("every locked dependency accepts the oldest stated Node", () => {
    const refusing: string[] = [];
    for (const [path, p] of Object.entries<{ engines?: { node?: string } }>(lock.packages)) {
      const range = p.engines?.node;
      if (range && !Bun.semver.satisfies(oldest, range)) refusing.push(`${path || "(root)"} wants node ${range}`);
    }
    expect(refusing).toEqual([]);
  });

  test("every dependency with an install script is decided in allowScripts", () => {
    const undecided: string[] = [];
    for (const [path, p] of Object.entries<{ hasInstallScript?: boolean }>(lock.packages)) {
      if (!p.hasInstallScript || path === "") continue;
      const name = path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length);
      if (!(name in (pkg.allowScripts ?? {}))) undecided.push(name);
    }
    expect(undecided).toEqual([]);
  });
});
