# Tries each "request:<subject>", "subscribe:<subject>", "kv:<bucket>/<key>" (get) or
# "watch:<bucket>/<key>" (the first value a watch gives) given as an argument with
# nats-py's ordinary API, as user NATS_USER (inbox prefix
# NATS_INBOX_PREFIX), and prints one JSON line each: {"try", "outcome", "detail"}, the
# outcome "answered", "permissions violation", "timeout" or "error".
import asyncio, json, os, sys
import nats

async def main():
    errors = asyncio.Queue()

    async def on_error(e):
        await errors.put(str(e))

    nc = await nats.connect(os.environ["NATS_URL"], user=os.environ["NATS_USER"],
                            password=os.environ["NATS_PASSWORD"],
                            inbox_prefix=os.environ["NATS_INBOX_PREFIX"],
                            error_cb=on_error, max_reconnect_attempts=0)

    async def violation(subject):
        # The server's -ERR for this subject, which nats-py hands to error_cb in lower case.
        try:
            while True:
                e = await asyncio.wait_for(errors.get(), 5)
                if "permissions violation" in e and subject.lower() in e:
                    return e
        except asyncio.TimeoutError:
            return None

    for attempt in sys.argv[1:]:
        op, target = attempt.split(":", 1)
        outcome, detail = "answered", ""
        try:
            if op == "request":
                task = asyncio.ensure_future(nc.request(target, b"{}", timeout=5))
                refused = await violation(target)
                if refused:
                    outcome, detail = "permissions violation", refused
                    task.cancel()
                else:
                    detail = (await task).data.decode()
            elif op == "subscribe":
                await nc.subscribe(target)
                await nc.flush()
                refused = await violation(target)
                outcome, detail = ("permissions violation", refused) if refused else ("answered", "subscribed")
            elif op in ("kv", "watch"):
                bucket, key = target.split("/", 1)
                js = nc.jetstream()
                task = asyncio.ensure_future(js.key_value(bucket))
                refused = await violation("$JS.API.")
                if refused:
                    outcome, detail = "permissions violation", refused
                    task.cancel()
                elif op == "kv":
                    entry = await (await task).get(key)
                    detail = entry.value.decode()
                else:
                    watcher = await (await task).watch(key)
                    entry = None
                    while entry is None or entry.value is None:
                        entry = await watcher.updates(timeout=5)
                    detail = entry.value.decode()
                    await watcher.stop()
        except nats.errors.TimeoutError as e:
            outcome, detail = "timeout", str(e)
        except Exception as e:
            outcome, detail = "error", repr(e)
        print(json.dumps({"try": attempt, "outcome": outcome, "detail": detail}), flush=True)
    await nc.close()

asyncio.run(main())
