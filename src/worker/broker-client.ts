// The worker's view of one broker: the project's fast client
// (src/connect/client.ts: GetTask, SetTaskStatus with fetch_next, batch status,
// Produce; signed with the first secret) tagged with its address, which the
// balancer and "report to the broker that handed it out" need.
import * as rpc from "../connect/client.ts";
import { decodeWireActivation, type WireActivation } from "../activation/wire.ts";

export type FetchFilter = rpc.TaskFilterArgs;
export type StatusReport = rpc.SetStatusArgs;
export type BrokerClientOptions = rpc.BrokerClientOptions;

export interface BrokerClient {
  readonly address: string;
  /** null on NOT_FOUND (nothing claimable). */
  getTask(req: FetchFilter): Promise<WireActivation | null>;
  setTaskStatus(req: StatusReport): Promise<WireActivation | null>;
  setBatchStatus(updates: StatusReport[]): Promise<void>;
  produce(activations: Uint8Array[]): Promise<{ accepted: number; duplicates: number; expired: number }>;
  close(): void;
}

export function createBrokerClient(options: BrokerClientOptions): BrokerClient {
  const c = rpc.createBrokerClient(options);
  return {
    address: options.address,
    getTask: async (r) => {
      const b = await c.getTaskBytes(r);
      return b ? decodeWireActivation(b) : null;
    },
    setTaskStatus: async (r) => {
      const b = await c.setTaskStatusBytes(r);
      return b ? decodeWireActivation(b) : null;
    },
    setBatchStatus: (u) => c.setBatchStatus(u),
    produce: (a) => c.produce(a),
    close: () => void c.close(),
  };
}
