# A hotel's own dashboard with nats-py: the current figures by request, then each
# change on the hotel's live subject. Prints one JSON line per value.
import asyncio, json, os
import nats

async def main():
    hotel = os.environ["PROPERTY_ID"]
    nc = await nats.connect(os.environ["NATS_URL"], user=os.environ["NATS_USER"],
                            password=os.environ["NATS_PASSWORD"],
                            inbox_prefix="_INBOX_" + hotel)
    live = await nc.subscribe("analytics.live.dashboard." + hotel)
    reply = await nc.request("analytics.query.dashboard." + hotel, b"{}", timeout=5)
    print(json.dumps({"current": json.loads(reply.data)}), flush=True)
    async for msg in live.messages:
        print(json.dumps({"live": json.loads(msg.data)}), flush=True)

asyncio.run(main())
