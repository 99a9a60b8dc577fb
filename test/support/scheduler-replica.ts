// A scheduler replica as its own process, for test/scheduler-replicas.test.ts:
// runs the scheduler loop on a shared run store with a scaled clock (shared
// origin, N times real speed) and prints one line per fired slot to stdout:
// `FIRED <schedule> <slotMs>`. Stops after RUN_FOR_MS of real time.
import { createScaledClock, normalizeSchedules, openRunStore, startScheduler } from "../../src/scheduler/index.ts";

const env = process.env;
const runs = openRunStore({ path: env.DB_PATH! });
const clock = createScaledClock({
  originMs: Number(env.ORIGIN_MS),
  realOriginMs: Number(env.REAL_ORIGIN_MS),
  speed: Number(env.SPEED),
});
const scheduler = startScheduler({
  schedules: normalizeSchedules(JSON.parse(env.SCHEDULES!)),
  runs,
  clock,
  replicaId: env.REPLICA_ID!,
  fire: async (schedule, slotMs) => {
    process.stdout.write(`FIRED ${schedule.key} ${slotMs}\n`);
  },
});
setTimeout(async () => {
  await scheduler.stop();
  runs.close();
  process.stdout.write("DONE\n");
  process.exit(0);
}, Number(env.RUN_FOR_MS));
