// Where a worker-thread entry file is, whether we run from source or from the
// `bun build --compile` binary. In the binary every entry point (see the
// "build" script in package.json) lives under /$bunfs/root/ at its path
// relative to src/, and bundled modules see the main entry's URL as theirs.

/**
 * @param fromSrc the entry's path relative to src/, e.g. "store/checkpoint-thread.ts"
 * @param besideCaller the same file as a URL relative to the calling module (used from source)
 */
export function threadEntry(fromSrc: string, besideCaller: URL, callerUrl: string): URL {
  return callerUrl.includes("/$bunfs/") ? new URL(`./${fromSrc}`, callerUrl) : besideCaller;
}
