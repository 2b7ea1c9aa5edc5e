// A hotel's own dashboard with nats.js: the current figures by request, then each
// change on the hotel's live subject. Prints one JSON line per value.
const { connect, JSONCodec } = require("nats");

(async () => {
  const hotel = process.env.PROPERTY_ID;
  const nc = await connect({ servers: process.env.NATS_URL, user: process.env.NATS_USER,
                             pass: process.env.NATS_PASSWORD, inboxPrefix: "_INBOX_" + hotel });
  const json = JSONCodec();
  const live = nc.subscribe("analytics.live.dashboard." + hotel);
  const reply = await nc.request("analytics.query.dashboard." + hotel, json.encode({}), { timeout: 5000 });
  console.log(JSON.stringify({ current: json.decode(reply.data) }));
  for await (const msg of live) console.log(JSON.stringify({ live: json.decode(msg.data) }));
})();
