// Starts the fauxqs SQS/S3 emulator for stackseam's tests and local runs.
//
// Why not `npx fauxqs`: in 1.9.2 it always logs every request, listens on
// every interface, and writes queue URLs with the host sqs.<region>.localhost,
// which does not resolve here. This launcher fixes all three.
//
// Usage: node launch.mjs [PORT]   (or STACKSEAM_EMULATOR_PORT=PORT)
// PORT 0 (the default) lets the OS pick a free port. Once listening it prints
// exactly one JSON line on stdout, which the Go harness parses:
//   {"listening":"http://127.0.0.1:PORT","port":PORT}
// With --exit-on-stdin-close it also exits when its stdin reaches EOF, so it
// cannot outlive a parent that kept the other end of a pipe.
import { buildApp } from "fauxqs";
import { SqsStore } from "./node_modules/fauxqs/dist/sqs/sqsStore.js";

const args = process.argv.slice(2);
const watchStdin = args.includes("--exit-on-stdin-close");
const portArg = args.find((a) => !a.startsWith("--"));
const portText = portArg ?? process.env.STACKSEAM_EMULATOR_PORT ?? "0";
const port = /^\d+$/.test(portText) ? Number(portText) : NaN;
if (!(port >= 0 && port <= 65535)) {
  console.error(`launch.mjs: invalid port ${JSON.stringify(portText)}`);
  process.exit(2);
}

// buildApp only overrides the SQS store's host when given a truthy value, so
// make the store ourselves with host '': queue URLs then follow the request's
// Host header (http://127.0.0.1:PORT/...), which every client can reach.
// SqsStore is not in the package's exports map, so import its file directly;
// it resolves to the same module instance that buildApp uses.
const sqsStore = new SqsStore();
sqsStore.host = "";
const app = buildApp({ logger: false, stores: { sqsStore } });

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  try {
    await app.close();
  } finally {
    process.exit(code);
  }
}
process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));
if (watchStdin) {
  process.stdin.on("end", () => shutdown(0));
  process.stdin.on("error", () => shutdown(0));
  process.stdin.resume();
}

try {
  await app.listen({ port, host: "127.0.0.1" });
} catch (err) {
  console.error(`launch.mjs: cannot listen on 127.0.0.1:${port}: ${err.message}`);
  process.exit(1);
}
const actual = app.server.address().port;
process.stdout.write(
  JSON.stringify({ listening: `http://127.0.0.1:${actual}`, port: actual }) + "\n",
);
