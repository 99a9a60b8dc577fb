// The broker's client for a push-mode worker: WorkerService.PushTask over the
// same hand-framed HTTP/2 channel as the broker client (client.ts), signed
// with the first secret exactly like calls to the broker (docs/spec/wire-contract.md:
// "The same scheme signs the broker's outbound PushTask calls to workers").
// Errors are ConnectError with the worker's gRPC code; connection failures
// are UNAVAILABLE.
import { createUnaryChannel } from "./client.ts";
import { encodePushTaskRequest } from "../protocol/messages.ts";

export const PATH_PUSH_TASK = "/sentry_protos.taskbroker.v1.WorkerService/PushTask";

export interface WorkerClientOptions {
  /** "host:port" of the worker's push port. */
  address: string;
  /** Signing secrets; the first signs every call. Empty or absent: unsigned. */
  secrets?: string[];
  /** Per-call deadline, ms. */
  deadlineMs?: number;
}

export interface WorkerClient {
  readonly address: string;
  /**
   * Hands one activation (its stored bytes) to the worker; resolves when the
   * worker accepted it. `callbackUrl` (host:port) tells the worker which broker
   * to report the result to.
   */
  pushTask(activation: Uint8Array, callbackUrl?: string): Promise<void>;
  close(): Promise<void>;
}

export function createWorkerClient(opts: WorkerClientOptions): WorkerClient {
  const channel = createUnaryChannel(opts);
  return {
    address: opts.address,
    async pushTask(activation, callbackUrl) {
      await channel.call(PATH_PUSH_TASK, encodePushTaskRequest(activation, callbackUrl));
    },
    close: () => channel.close(),
  };
}
