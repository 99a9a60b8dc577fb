// `taskplatform broker`: resolve configuration (a bad value exits 2 with one
// line), log it with secrets redacted, start the broker, and turn SIGTERM /
// SIGINT into a graceful stop (exit 0). A second signal while stopping exits
// at once: the operator asked twice, and everything answered is already
// durable (inserts commit before Produce is answered), so nothing is lost.
import { lastValue, parseCommandLine } from "../config/args.ts";
import { configFields, resolveBrokerConfig } from "../config/load.ts";
import { ConfigError } from "../config/source.ts";
import { createLogger, parseLogFilter } from "../log.ts";
import { runtimeTuning } from "./runtime-tuning.ts";

const SIGNAL_NUMBER = { SIGINT: 2, SIGTERM: 15 } as const;

export async function brokerCommand(argv: string[]): Promise<number> {
  let configPath: string | undefined;
  let resolved;
  try {
    const args = parseCommandLine(argv, [{ names: ["--config", "-c"], kind: "value" }], { command: "broker" });
    if (args.help) {
      const { brokerHelp } = await import("../config/help.ts");
      process.stdout.write(brokerHelp());
      return 0;
    }
    configPath = lastValue(args, "--config");
    resolved = resolveBrokerConfig(process.env, configPath);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`taskplatform broker: ${err.message}\n`);
    return 2;
  }
  const { config, notes } = resolved;
  const filter = parseLogFilter(config.log_filter); // validated by the loader
  const log = createLogger({ format: config.log_format, level: "problem" in filter ? "info" : filter });
  for (const note of notes) log.warn("config_note", { note });
  log.info("config", { file: configPath, ...configFields(config) });
  log.info("runtime", { bun: Bun.version, ...runtimeTuning("broker") });

  // Signals are watched from the start so one arriving during start-up still stops cleanly.
  let signalled: ((name: keyof typeof SIGNAL_NUMBER) => void) | null = null;
  let received: keyof typeof SIGNAL_NUMBER | null = null;
  const onSignal = (name: keyof typeof SIGNAL_NUMBER) => {
    if (received) {
      log.warn("forced_exit", { signal: name });
      process.exit(128 + SIGNAL_NUMBER[name]);
    }
    received = name;
    signalled?.(name);
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));

  const { startBroker } = await import("../broker.ts");
  let broker;
  try {
    broker = await startBroker(config, log);
  } catch (err) {
    log.error("broker_start_failed", { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
  const signal = received ?? (await new Promise<keyof typeof SIGNAL_NUMBER>((resolve) => (signalled = resolve)));
  log.info("signal_received", { signal });
  try {
    await broker.stop();
  } catch (err) {
    log.error("broker_stop_failed", { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
  return 0;
}
