// Simulated workers for bench/scale.ts: one process holding many delivery
// streams (each on its own HTTP/2 connection, as separate worker processes
// would), each granting a fixed credit and completing every activation at
// once, results batched per turn of the event loop. What a worker costs the
// broker is all on the wire, so for the broker this is the same as that many
// worker processes, at a fraction of the machine.
//
//   bun bench/stream-clients.ts <host:port> <streams> <credit> <application>
// Prints "ready" once every stream is open, then "acked <n>" lines as results are acknowledged.
import { openDeliveryStream, type DeliveryStream } from "../src/connect/delivery-client.ts";
import { WireReader } from "../src/protocol/wire-reader.ts";

const [address, streamsText, creditText, application] = process.argv.slice(2);
const STREAMS = Number(streamsText);
const CREDIT = Number(creditText);

/** TaskActivation.id (field 1) without decoding the rest. */
function idOf(bytes: Uint8Array): string {
  const r = new WireReader(bytes);
  while (!r.done()) {
    const [f, w] = r.tag();
    if (f === 1) return r.string();
    r.skip(w);
  }
  return "";
}

let acked = 0;
let printed = 0;
let printing = false;
const print = () => {
  printing = false;
  if (acked !== printed) {
    printed = acked;
    process.stdout.write(`acked ${acked}\n`);
  }
};

const opened: Promise<void>[] = [];
for (let i = 0; i < STREAMS; i++) {
  let pending: { id: string; status: 5 }[] = [];
  let stream!: DeliveryStream;
  const flush = () => {
    const results = pending;
    pending = [];
    stream.send({ results });
  };
  stream = openDeliveryStream({
    address: address!,
    open: { application, worker: `sim-${process.pid}-${i}` },
    credit: CREDIT,
    onMessage(m) {
      if (m.resultsCommitted > 0) {
        acked += m.resultsCommitted;
        if (!printing) {
          printing = true;
          setTimeout(print, 10);
        }
      }
      if (m.activations.length === 0) return;
      if (pending.length === 0) setImmediate(flush);
      for (const a of m.activations) pending.push({ id: idOf(a), status: 5 });
    },
    onEnd(err) {
      if (err) process.stderr.write(`stream ${i} ended: ${err.message}\n`);
    },
  });
  opened.push(stream.opened);
}
await Promise.all(opened);
process.stdout.write("ready\n");
