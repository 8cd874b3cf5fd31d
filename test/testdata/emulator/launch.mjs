// Starts the fauxqs SQS/S3 emulator for stackseam's tests and local runs.
//
// Why not `npx fauxqs`: in 1.9.2 it always logs every request, listens on
// every interface, and writes queue URLs with the host sqs.<region>.localhost,
// which does not resolve here. This launcher fixes all three.
//
// Usage: node launch.mjs [PORT] [--exit-on-stdin-close] [--one-per-group]
//        (or STACKSEAM_EMULATOR_PORT=PORT)
// PORT 0 (the default) lets the OS pick a free port. Once listening it prints
// exactly one JSON line on stdout, which the Go harness parses:
//   {"listening":"http://127.0.0.1:PORT","port":PORT}
// With --exit-on-stdin-close it also exits when its stdin reaches EOF, so it
// cannot outlive a parent that kept the other end of a pipe.
//
// FIFO receives behave like SQS's (see fifoLikeSQS below); --one-per-group
// restores fauxqs's own rule of at most one message per group per receive.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { buildApp } from "fauxqs";
import { SqsQueue, SqsStore } from "./node_modules/fauxqs/dist/sqs/sqsStore.js";
import { S3Store } from "./node_modules/fauxqs/dist/s3/s3Store.js";
import { S3Error } from "./node_modules/fauxqs/dist/common/errors.js";

const args = process.argv.slice(2);
const watchStdin = args.includes("--exit-on-stdin-close");
if (!args.includes("--one-per-group")) fifoLikeSQS();
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
const s3Store = new S3Store();
const conditions = conditionalWrites(s3Store);
const app = buildApp({ logger: false, stores: { sqsStore, s3Store } });
app.addHook("preHandler", (request, _reply, done) => {
  // The handler runs within done(), so the store's putObject sees this request's headers.
  conditions.run({ ifNoneMatch: request.headers["if-none-match"], ifMatch: request.headers["if-match"] }, done);
});

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

// fifoLikeSQS replaces fauxqs's FIFO receive with SQS's rule. fauxqs 1.9.2
// hands out at most one message per message group per ReceiveMessage; SQS
// returns as many messages of a group as it can, in order (up to
// MaxNumberOfMessages, and a receive may mix groups), and delivers nothing of
// a group while any of its messages is in flight. With one message per group
// a consumer never sees a failed message followed by later messages of its
// group in the same batch, nor receive counts that grow on messages stuck
// behind a failing one: the cases stackseam's in-order batch handling and its
// dead-letter handling exist for.
//
// Only SqsQueue.dequeueFifo changes (it is what ReceiveMessage calls for FIFO
// queues); visibility, receive counts, redrive to the dead-letter queue at
// maxReceiveCount, delays and deduplication stay fauxqs's. fauxqs keeps a
// group's in-flight count in fifoLockedGroups and its waiting messages in
// fifoMessages; a message whose visibility ends is put back at the front of its
// group, which with several in flight reverses them, so each group is put back
// in send order (SequenceNumber) before it is read.
function fifoLikeSQS() {
  if (typeof SqsQueue.prototype.dequeueFifo !== "function") {
    // Another fauxqs version: the method replaced here is gone, so this would change nothing.
    console.error("launch.mjs: fauxqs has no SqsQueue.dequeueFifo; fifoLikeSQS must be revisited");
    process.exit(1);
  }
  const bySequence = (a, b) =>
    a.sequenceNumber && b.sequenceNumber ? a.sequenceNumber.localeCompare(b.sequenceNumber) : 0;
  SqsQueue.prototype.dequeueFifo = function (maxCount, visibilityTimeoutOverride, dlqResolver) {
    this.processTimers();
    const visibilityTimeout = visibilityTimeoutOverride ?? parseInt(this.attributes.VisibilityTimeout);
    let maxReceiveCount = Infinity;
    let dlq;
    if (this.attributes.RedrivePolicy && dlqResolver) {
      try {
        const policy = JSON.parse(this.attributes.RedrivePolicy);
        maxReceiveCount = Number(policy.maxReceiveCount ?? Infinity);
        dlq = dlqResolver(policy.deadLetterTargetArn);
      } catch {
        // an invalid policy redrives nothing, as in fauxqs
      }
    }
    const count = Math.min(maxCount, 10);
    const result = [];
    for (const [groupId, msgs] of this.fifoMessages) {
      if (result.length >= count) break;
      if (this.fifoLockedGroups.has(groupId) || msgs.length === 0) continue;
      msgs.sort(bySequence); // stable: messages without a sequence number keep their place
      while (result.length < count && msgs.length > 0) {
        const msg = msgs.shift();
        msg.approximateReceiveCount++;
        msg.approximateFirstReceiveTimestamp ??= Date.now();
        if (dlq && msg.approximateReceiveCount > maxReceiveCount) {
          this.spy?.addMessage({
            service: "sqs", queueName: this.name, messageId: msg.messageId, body: msg.body,
            messageAttributes: msg.messageAttributes, status: "dlq", timestamp: Date.now(),
          });
          dlq.enqueue(msg);
          continue;
        }
        const receiptHandle = randomUUID();
        this.inflightMessages.set(receiptHandle, {
          message: msg,
          receiptHandle,
          visibilityDeadline: Date.now() + visibilityTimeout * 1000,
        });
        const received = { MessageId: msg.messageId, ReceiptHandle: receiptHandle, MD5OfBody: msg.md5OfBody, Body: msg.body };
        if (msg.md5OfMessageAttributes) received.MD5OfMessageAttributes = msg.md5OfMessageAttributes;
        if (Object.keys(msg.messageAttributes).length > 0) received.MessageAttributes = msg.messageAttributes;
        result.push(received);
        // One count per message in flight: the group stays locked until all
        // of them are deleted or visible again.
        this.fifoLockedGroups.set(groupId, (this.fifoLockedGroups.get(groupId) ?? 0) + 1);
      }
      if (msgs.length === 0) this.fifoMessages.delete(groupId);
    }
    return result;
  };
}

// conditionalWrites makes PutObject honour If-None-Match: * and If-Match: ETag, and DeleteObject
// If-Match: ETag, as S3 does (412 PreconditionFailed), which fauxqs 1.9.2 ignores. OpenTofu's S3 lock file (use_lockfile)
// is a PutObject with If-None-Match: *: without this, two runs would both "take" the lock. The
// check and the write happen in one synchronous call of the store, so no other request can come
// between them. Returns the AsyncLocalStorage that carries a request's headers to the store.
function conditionalWrites(store) {
  const als = new AsyncLocalStorage();
  const put = store.putObject.bind(store);
  store.putObject = (bucket, key, ...rest) => {
    const cond = als.getStore();
    const existing = store.buckets.get(bucket)?.get(key);
    if (cond?.ifNoneMatch === "*" && existing) {
      throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412, `/${bucket}/${key}`);
    }
    if (cond?.ifMatch && (!existing || (cond.ifMatch !== "*" && cond.ifMatch !== existing.etag))) {
      const status = existing ? 412 : 404;
      throw new S3Error(existing ? "PreconditionFailed" : "NoSuchKey",
        existing ? "At least one of the pre-conditions you specified did not hold" : "The specified key does not exist.", status, `/${bucket}/${key}`);
    }
    return put(bucket, key, ...rest);
  };
  const del = store.deleteObject.bind(store);
  store.deleteObject = (bucket, key) => {
    const cond = als.getStore();
    const existing = store.buckets.get(bucket)?.get(key);
    if (cond?.ifMatch && !existing) {
      throw new S3Error("NoSuchKey", "The specified key does not exist.", 404, `/${bucket}/${key}`);
    }
    if (cond?.ifMatch && cond.ifMatch !== "*" && cond.ifMatch !== existing.etag) {
      throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412, `/${bucket}/${key}`);
    }
    return del(bucket, key);
  };
  return als;
}
