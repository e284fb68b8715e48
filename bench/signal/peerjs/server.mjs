// PeerJS server for bench/signal: the stock PeerServer of the npm package
// "peer" with its defaults, except concurrent_limit (default 5000), which
// the benchmark raises, and no per-client console logging (the package's
// CLI logs every connect and disconnect, which would dominate the CPU).
//
//   node server.mjs <port> <concurrent_limit>
import { PeerServer } from "peer";

const port = Number(process.argv[2] ?? 9000);
const limit = Number(process.argv[3] ?? 100000);
const server = PeerServer({ host: "127.0.0.1", port, concurrent_limit: limit }, (srv) => {
  const a = srv.address();
  console.error(`peerjs: listening on ${a.address}:${a.port}, concurrent_limit ${limit}`);
  const stop = () => process.exit(0); // open sockets would keep close() waiting
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
});
server.on("error", (e) => console.error("peerjs error:", e?.message ?? e));
