// Interoperability check: nostr-tools (2.x) against a running relay.
//
// Usage: node nostr_tools_check.mjs ws://127.0.0.1:PORT
//
// Reads the NIP-11 document, generates a key, publishes a kind-1 note and a kind-33401 exercise
// template, queries them back (by id, by author+kind, by #d, also through SimplePool), counts
// them (NIP-45), receives a live event published over a second connection, and verifies the id
// and signature of everything that comes back. Exits 0 on success; on failure prints
// "FAIL [nostr-tools] at step ...: ..." to stderr and exits 1 (2 on bad usage). Every wait is
// bounded, so the script cannot hang.

import { isDeepStrictEqual } from "node:util";

import { fetchRelayInformation } from "nostr-tools/nip11";
import { SimplePool, useWebSocketImplementation as usePoolWebSocket } from "nostr-tools/pool";
import { finalizeEvent, generateSecretKey, getPublicKey, verifyEvent } from "nostr-tools/pure";
import { Relay, useWebSocketImplementation } from "nostr-tools/relay";
import WebSocket from "ws";

import { STEP_MS, check, startCheck, withTimeout } from "./harness.mjs";

// Node 20 has no global WebSocket.
useWebSocketImplementation(WebSocket);
usePoolWebSocket(WebSocket);

const EXERCISE_TEMPLATE = 33401;

const { url, progress, fail } = startCheck("nostr-tools", "nostr_tools_check.mjs");

const wire = (event) => ({
  id: event.id,
  pubkey: event.pubkey,
  created_at: event.created_at,
  kind: event.kind,
  tags: event.tags,
  content: event.content,
  sig: event.sig,
});

// A plain copy drops nostr-tools' cached "verified" mark, so verifyEvent really recomputes the
// id and checks the signature.
function verified(event) {
  const copy = JSON.parse(JSON.stringify(wire(event)));
  check(verifyEvent(copy), `bad id or signature on ${JSON.stringify(copy)}`);
  return copy;
}

function sameEvents(got, expected, what) {
  const key = (events) => events.map(wire).sort((a, b) => a.id.localeCompare(b.id));
  check(
    isDeepStrictEqual(key(got), key(expected)),
    `${what}: expected ${JSON.stringify(key(expected))}\n  got ${JSON.stringify(key(got))}`,
  );
}

// REQ until EOSE; a CLOSED before EOSE is an error.
function query(relay, filters, what) {
  const events = [];
  const done = new Promise((resolve, reject) => {
    let eosed = false;
    const sub = relay.subscribe(filters, {
      onevent: (event) => events.push(verified(event)),
      oninvalidevent: (event) => reject(new Error(`invalid event: ${JSON.stringify(event)}`)),
      oneose: () => {
        eosed = true;
        sub.close();
        resolve(events);
      },
      onclose: (reason) => {
        if (!eosed) reject(new Error(`subscription closed before EOSE: ${reason}`));
      },
    });
  });
  return withTimeout(done, `EOSE for ${what}`);
}

async function main() {
  const now = Math.floor(Date.now() / 1000);
  const secret = generateSecretKey();
  const pubkey = getPublicKey(secret);
  const dTag = `bench-press-${pubkey.slice(0, 8)}`;

  progress.step = "relay information (NIP-11)";
  const info = await withTimeout(fetchRelayInformation(url), "the NIP-11 document");
  for (const nip of [1, 9, 11, 45]) {
    const nips = info.supported_nips ?? [];
    check(nips.includes(nip), `NIP-11 supported_nips lacks ${nip}: ${JSON.stringify(info)}`);
  }

  progress.step = "connect";
  const relay = await withTimeout(Relay.connect(url), "connection");
  const other = await withTimeout(Relay.connect(url), "second connection");

  progress.step = "publish";
  const note = finalizeEvent(
    { kind: 1, created_at: now, tags: [], content: "nostr-tools interop note" },
    secret,
  );
  const template = finalizeEvent(
    {
      kind: EXERCISE_TEMPLATE,
      created_at: now,
      tags: [
        ["d", dTag],
        ["title", "Bench press"],
        ["format", "weight", "reps", "rpe", "set_type"],
        ["format_units", "kg", "count", "0-10", "enum"],
        ["equipment", "barbell"],
      ],
      content: "Lie on the bench, lower the bar to the chest, press.",
    },
    secret,
  );
  for (const event of [note, template]) {
    // publish() rejects when the relay answers OK false.
    await withTimeout(relay.publish(event), `OK for kind ${event.kind}`);
  }

  progress.step = "query by id";
  sameEvents(await query(other, [{ ids: [note.id] }], "ids"), [note], "by id");
  sameEvents(
    await query(other, [{ ids: [note.id, template.id] }], "two ids"),
    [note, template],
    "by two ids",
  );

  progress.step = "query by author and kind";
  sameEvents(
    await query(other, [{ authors: [pubkey], kinds: [1] }], "authors+kinds"),
    [note],
    "by author, kind 1",
  );
  sameEvents(
    await query(other, [{ authors: [pubkey], kinds: [EXERCISE_TEMPLATE] }], "authors+kinds"),
    [template],
    "by author, kind 33401",
  );
  sameEvents(
    await query(other, [{ authors: [pubkey] }], "authors"),
    [note, template],
    "by author",
  );

  progress.step = "query by #d";
  sameEvents(
    await query(other, [{ kinds: [EXERCISE_TEMPLATE], "#d": [dTag] }], "#d"),
    [template],
    "by #d",
  );
  sameEvents(
    await query(other, [{ kinds: [EXERCISE_TEMPLATE], authors: [pubkey], "#d": ["squat"] }], "#d"),
    [],
    "by another #d",
  );

  progress.step = "query through SimplePool";
  const pool = new SimplePool();
  try {
    const pooled = await withTimeout(
      pool.querySync([url], { authors: [pubkey], "#d": [dTag] }, { maxWait: STEP_MS }),
      "SimplePool.querySync",
    );
    sameEvents(pooled.map(verified), [template], "SimplePool by author and #d");
  } finally {
    pool.close([url]);
  }

  progress.step = "count (NIP-45)";
  const count = await withTimeout(other.count([{ authors: [pubkey] }], {}), "COUNT");
  check(count === 2, `COUNT by author: expected 2, got ${count}`);

  progress.step = "live subscription";
  let eosed;
  const eose = new Promise((resolve) => {
    eosed = resolve;
  });
  const live = new Promise((resolve, reject) => {
    other.subscribe([{ authors: [pubkey], kinds: [1], since: now }], {
      onevent: (event) => {
        if (event.id !== note.id) resolve(verified(event));
      },
      oninvalidevent: (event) => reject(new Error(`invalid event: ${JSON.stringify(event)}`)),
      oneose: () => eosed(),
      onclose: (reason) => reject(new Error(`subscription closed: ${reason}`)),
    });
  });
  await withTimeout(eose, "EOSE of the live subscription");
  const fresh = finalizeEvent(
    { kind: 1, created_at: now, tags: [["t", "interop"]], content: "live from nostr-tools" },
    secret,
  );
  await withTimeout(relay.publish(fresh), "OK for the live event");
  const got = await withTimeout(live, "the live event");
  sameEvents([got], [fresh], "live event");

  relay.close();
  other.close();
  console.log(
    `OK [nostr-tools] ${url}: NIP-11, publish, query (id, author+kind, #d), count, live`,
  );
}

main().then(
  () => process.exit(0),
  (err) => fail(err?.stack ?? String(err)),
);
