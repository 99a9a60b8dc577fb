// Test helper for configuration errors as an operator meets them: loading
// must fail with a ConfigError whose message is one line.
import { expect } from "bun:test";
import { ConfigError } from "../../src/config/source.ts";

/** The ConfigError message `load` throws, failing the test if it succeeds, throws something else, or spans lines. */
export function configErrorOf(load: () => unknown): string {
  try {
    load();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("expected a ConfigError");
}
