// Periodic tasks for `taskplatform scheduler --schedules ./schedules.ts`: a
// crontab (minute precision, UTC unless `tz` says otherwise) and a fixed
// interval in whole seconds. Missed slots are not caught up after downtime.
// Importing the task module gives the activations the tasks' own options
// (sync_inventory's retry policy, the deadlines); without it they get none.
import { defineSchedules } from "taskplatform";
import "./tasks.ts";

export default defineSchedules({
  "nightly-report": { task: "reports:reports.nightly", crontab: "0 3 * * *", application: "shop" },
  "inventory-sync": { task: "billing:billing.sync_inventory", intervalSec: 600, args: ["all"], application: "shop" },
});
