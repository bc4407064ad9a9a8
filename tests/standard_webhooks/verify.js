// Verifies deliveries the ledger sent with the public `standardwebhooks` library (npm), as a
// pet-shop system would. Reads {"secret": "whsec_…", "deliveries": [{"headers": {…}, "body": "…"}]}
// on stdin; prints one JSON line per delivery: {"ok": true, "id": …, "type": …} or
// {"ok": false, "error": …}.
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { secret, deliveries } = JSON.parse(input);
  const wh = new Webhook(secret);
  for (const d of deliveries) {
    try {
      const payload = wh.verify(d.body, d.headers);
      console.log(JSON.stringify({ ok: true, id: payload.id, type: payload.type }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: String(e && e.message ? e.message : e) }));
    }
  }
});
