// The RPC component's public surface: the broker's RPC server (one port for
// gRPC, Connect and gRPC-Web), the project's fast broker client, and request
// signing. Everything else in this folder is internal to the component.
export { startRpcServer, type RpcServer, type RpcServerOptions } from "./server.ts";
export {
  adminClient,
  createBrokerClient,
  healthClient,
  signingInterceptor,
  type BrokerClient,
  type BrokerClientOptions,
  type SetStatusArgs,
  type TaskFilterArgs,
} from "./client.ts";
export { SIGNATURE_HEADER, isSigningExempt, signRequest, verifySignature } from "./signing.ts";
