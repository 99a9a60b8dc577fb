// Loaded by bun test before every test file (bunfig.toml [test] preload): a
// hook here runs once for the whole run. After the last file it removes the
// temporary directories the test fixtures made (databases, task files).
import { afterAll } from "bun:test";
import { removeTempDirs } from "./broker-process.ts";

afterAll(removeTempDirs);
