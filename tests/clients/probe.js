// Tries each "request:<subject>", "subscribe:<subject>", "kv:<bucket>/<key>" (get) or
// "watch:<bucket>/<key>" (the first value a watch gives) given as an argument with
// nats.js's ordinary API, as user NATS_USER (inbox prefix
// NATS_INBOX_PREFIX), and prints one JSON line each: {"try", "outcome", "detail"}, the
// outcome "answered", "permissions violation", "timeout" or "error".
const { connect, ErrorCode } = require("nats");

const outcomeOf = (e) =>
  e.code === ErrorCode.PermissionsViolation ? "permissions violation"
    : e.code === ErrorCode.Timeout ? "timeout" : "error";

(async () => {
  const nc = await connect({ servers: process.env.NATS_URL, user: process.env.NATS_USER,
                             pass: process.env.NATS_PASSWORD, inboxPrefix: process.env.NATS_INBOX_PREFIX,
                             maxReconnectAttempts: 0 });
  for (const attempt of process.argv.slice(2)) {
    const [op, ...rest] = attempt.split(":");
    const target = rest.join(":");
    let outcome = "answered", detail = "";
    try {
      if (op === "request") {
        const reply = await nc.request(target, "{}", { timeout: 5000 });
        detail = reply.string();
      } else if (op === "subscribe") {
        detail = await new Promise((resolve, reject) => {
          nc.subscribe(target, { callback: (err) => err && reject(err) });
          nc.flush().then(() => setTimeout(() => resolve("subscribed"), 2000));
        });
      } else if (op === "kv" || op === "watch") {
        const [bucket, key] = target.split("/");
        const kv = await nc.jetstream().views.kv(bucket, { bindOnly: true });
        if (op === "kv") {
          const entry = await kv.get(key);
          detail = entry ? entry.string() : "no such key";
        } else {
          const watch = await kv.watch({ key });
          for await (const entry of watch) {
            detail = entry.string();
            break;
          }
          watch.stop();
        }
      }
    } catch (e) {
      outcome = outcomeOf(e);
      detail = e.message;
    }
    console.log(JSON.stringify({ try: attempt, outcome, detail }));
  }
  await nc.close();
})();
