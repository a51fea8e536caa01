// The device side of the LoRaWAN integration test, done by npm lora-packet (an implementation
// independent of the gateway's): reads one JSON request per line on stdin and answers one JSON
// line on stdout.
//   {"op":"up", "devAddr", "nwk", "app", "fcnt", "port", "payload", "confirmed", "fopts"}
//       -> {"phy"}: a signed, encrypted uplink (32-bit fcnt: its upper 16 bits sign the MIC)
//   {"op":"join", "appKey", "joinEui", "devEui", "devNonce"} -> {"phy"}: a Join-Request
//   {"op":"down", "phy", "nwk", "app", "fcnt"} -> {"micOk", "ack", "devAddr", "fcnt", "mtype",
//       "fopts"}: a downlink checked, with its FOpts (MAC answers, plain in 1.0.x) in hex
//   {"op":"accept", "phy", "appKey", "devNonce"} -> {"micOk", "devAddr", "appNonce", "netId",
//       "nwk", "app"}: a Join-Accept decrypted and checked, and the session keys it gives
"use strict";
const path = require("path");
const readline = require("readline");
const lp = require(path.join(__dirname, "..", "npm", "node_modules", "lora-packet"));

const hex = (s) => Buffer.from(s || "", "hex");
const msb = (fcnt) => Buffer.from([(fcnt >>> 16) & 0xff, (fcnt >>> 24) & 0xff]);

function handle(r) {
  if (r.op === "up") {
    const fields = {
      MType: r.confirmed ? "Confirmed Data Up" : "Unconfirmed Data Up",
      DevAddr: hex(r.devAddr),
      FCtrl: { ADR: false },
      FCnt: r.fcnt & 0xffff,
      payload: hex(r.payload),
    };
    if (r.port !== undefined && r.port !== null) fields.FPort = r.port;
    if (r.fopts) fields.FOpts = hex(r.fopts);
    const p = lp.fromFields(fields, hex(r.app), hex(r.nwk), undefined, msb(r.fcnt));
    // lora-packet leaves the MIC unset (EEEEEEEE) on a frame without FPort: sign it explicitly.
    lp.recalculateMIC(p, hex(r.nwk), undefined, msb(r.fcnt));
    return { phy: p.getPHYPayload().toString("hex") };
  }
  if (r.op === "join") {
    const nonce = Buffer.alloc(2);
    nonce.writeUInt16BE(r.devNonce);
    const p = lp.fromFields({
      MType: "Join Request",
      AppEUI: hex(r.joinEui),
      DevEUI: hex(r.devEui),
      DevNonce: nonce,
    }, undefined, undefined, hex(r.appKey));
    return { phy: p.getPHYPayload().toString("hex") };
  }
  if (r.op === "down") {
    const p = lp.fromWire(hex(r.phy));
    return {
      micOk: lp.verifyMIC(p, hex(r.nwk), undefined, msb(r.fcnt || 0)),
      ack: p.getFCtrlACK(),
      devAddr: p.DevAddr.toString("hex"),
      fcnt: p.getFCnt(),
      mtype: p.getMType(),
      fopts: p.FOpts ? Buffer.from(p.FOpts).toString("hex") : "",
    };
  }
  if (r.op === "accept") {
    const wire = lp.fromWire(hex(r.phy));
    const p = lp.fromWire(lp.decryptJoinAccept(wire, hex(r.appKey)));
    const nonce = Buffer.alloc(2);
    nonce.writeUInt16BE(r.devNonce);
    const keys = lp.generateSessionKeys(hex(r.appKey), p.NetID, p.AppNonce, nonce);
    return {
      micOk: lp.verifyMIC(p, undefined, hex(r.appKey)),
      mtype: p.getMType(),
      devAddr: p.DevAddr.toString("hex"),
      appNonce: p.AppNonce.toString("hex"),
      netId: p.NetID.toString("hex"),
      nwk: keys.NwkSKey.toString("hex"),
      app: keys.AppSKey.toString("hex"),
    };
  }
  return { error: "unknown op " + r.op };
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let out;
  try {
    out = handle(JSON.parse(line));
  } catch (e) {
    out = { error: String(e && e.stack ? e.stack : e) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
