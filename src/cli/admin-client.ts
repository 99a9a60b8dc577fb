// A client for the broker's AdminService (proto/taskplatform/v1/admin.proto)
// for CLI commands: gRPC over HTTP/2 via connect-node (not a hot path, so the
// library client is fine), signing every request like a worker does when the
// broker has shared secrets (wire-contract.md "Request signing").
import { toBinary } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SIGNATURE_HEADER, signRequest } from "../connect/signing.ts";
import { AdminService } from "../gen/taskplatform/v1/admin_pb.ts";

export type AdminClient = Client<typeof AdminService>;

/** Adds `sentry-signature` (HMAC of path + ":" + request bytes) with the first secret. */
export function signingInterceptor(secret: string): Interceptor {
  return (next) => async (req) => {
    if (!req.stream) {
      const path = `/${req.method.parent.typeName}/${req.method.name}`;
      req.header.set(SIGNATURE_HEADER, signRequest(secret, path, toBinary(req.method.input, req.message)));
    }
    return next(req);
  };
}

export function createAdminClient(opts: { address: string; secrets?: readonly string[]; timeoutMs?: number }): AdminClient {
  const baseUrl = /^https?:\/\//.test(opts.address) ? opts.address : `http://${opts.address}`;
  const secret = opts.secrets?.[0];
  const transport = createGrpcTransport({
    baseUrl,
    interceptors: secret ? [signingInterceptor(secret)] : [],
    defaultTimeoutMs: opts.timeoutMs ?? 10_000,
  });
  return createClient(AdminService, transport);
}
