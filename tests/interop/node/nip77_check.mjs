// Interoperability check: nostr-tools' NIP-77 negentropy sync against a running relay.
//
// Usage: node nip77_check.mjs ws://127.0.0.1:PORT CASES.json
//
// CASES.json lists cases { name, filter, local: [[created_at, id], ...], have: [id, ...],
// need: [id, ...] }. For each, the script seals `local` in nostr-tools' storage, runs
// NegentropySync with `filter` and checks that the ids it reports as had (only here) and
// needed (only on the relay) are exactly `have` and `need`. A case with `upload` (the signed
// events behind `have`) is then carried out both ways, as a client's sync would: the `need`
// ids are fetched by REQ (each event's id and signature verified), the `upload` events are
// published (each must be answered OK true), and a second reconciliation over the client's
// new set must find nothing left on either side. Exits 0 and prints
// "OK [nostr-tools nip77] ..." on success; "FAIL ..." and exit 1 otherwise.

import { readFileSync } from "node:fs";

// nostr-tools ships nip77 without listing it in its package exports: imported by path.
import {
  NegentropyStorageVector,
  NegentropySync,
} from "./node_modules/nostr-tools/lib/esm/nip77.js";
import { verifyEvent } from "nostr-tools/pure";
import { Relay, useWebSocketImplementation } from "nostr-tools/relay";
import WebSocket from "ws";

import { check, startCheck, withTimeout } from "./harness.mjs";

useWebSocketImplementation(WebSocket);

const { url, progress, fail } = startCheck("nostr-tools nip77", "nip77_check.mjs");
const cases = JSON.parse(readFileSync(process.argv[3], "utf8"));

const IDS_PER_REQ = 200;

function sync(relay, item, local = item.local) {
  const storage = new NegentropyStorageVector();
  for (const [timestamp, id] of local) storage.insert(timestamp, id);
  storage.seal();
  const have = new Set();
  const need = new Set();
  return new Promise((resolve, reject) => {
    const neg = new NegentropySync(relay, storage, item.filter, {
      onhave: (id) => have.add(id),
      onneed: (id) => need.add(id),
      onclose: (reason) => (reason ? reject(new Error(`closed: ${reason}`)) : resolve({ have, need })),
    });
    neg.start().catch(reject);
  });
}

function same(got, expected, what) {
  const a = [...got].sort();
  const b = [...expected].sort();
  check(
    a.length === b.length && a.every((v, i) => v === b[i]),
    `${what}: expected ${b.length} ids, got ${a.length}`,
  );
}

function fetchIds(relay, ids) {
  const got = [];
  const chunks = [];
  for (let i = 0; i < ids.length; i += IDS_PER_REQ) chunks.push(ids.slice(i, i + IDS_PER_REQ));
  return chunks.reduce(
    (done, chunk) =>
      done.then(
        () =>
          new Promise((resolve) => {
            const sub = relay.subscribe([{ ids: chunk }], {
              onevent: (event) => got.push(event),
              oneose: () => {
                sub.close();
                resolve();
              },
            });
          }),
      ),
    Promise.resolve(),
  ).then(() => got);
}

// Download what the relay has, upload what it lacks, and check that nothing is left.
async function transfer(relay, item, need) {
  const fetched = await fetchIds(relay, [...need]);
  for (const event of fetched) {
    check(verifyEvent({ ...event }), `bad id or signature on ${event.id}`);
  }
  same(new Set(fetched.map((e) => e.id)), need, `${item.name}: fetched`);
  for (const event of item.upload) await relay.publish(event);
  const local = [...item.local, ...fetched.map((e) => [e.created_at, e.id])];
  const after = await sync(relay, item, local);
  same(after.have, [], `${item.name}: have after the transfer`);
  same(after.need, [], `${item.name}: need after the transfer`);
}

try {
  progress.step = "connect";
  const relay = await withTimeout(Relay.connect(url), "connect");
  for (const item of cases) {
    progress.step = item.name;
    const { have, need } = await withTimeout(sync(relay, item), item.name);
    same(have, item.have, `${item.name}: have`);
    same(need, item.need, `${item.name}: need`);
    if (item.upload) {
      progress.step = `${item.name}: transfer`;
      await withTimeout(transfer(relay, item, need), `${item.name}: transfer`);
    }
  }
  relay.close();
  console.log(`OK [nostr-tools nip77] ${cases.length} cases`);
  process.exit(0);
} catch (err) {
  fail(err?.stack ?? String(err));
}
