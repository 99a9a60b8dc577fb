// Periodic tasks for `taskplatform scheduler --schedules ./schedules.ts`: a
// crontab (minute precision, UTC unless `tz` says otherwise) and a fixed
// interval in whole seconds. Missed slots are not caught up after downtime.
import { defineSchedules } from "taskplatform";

export default defineSchedules({
  "nightly-report": { task: "reports:reports.nightly", crontab: "0 3 * * *", application: "shop" },
  "inventory-sync": { task: "billing:billing.sync_inventory", intervalSec: 600, args: ["all"], application: "shop" },
});
