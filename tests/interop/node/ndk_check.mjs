// Interoperability check: NDK (@nostr-dev-kit/ndk 3.x) against a running relay.
//
// Usage: node ndk_check.mjs ws://127.0.0.1:PORT
//
// Generates a key with NDK, publishes a kind-1 note and a kind-33401 exercise template, queries
// them back (by id, by author+kind, by #d) from a separate NDK instance, counts them (NIP-45),
// publishes a kind-1301 record naming the exercise and a template by their multi-letter tags
// and finds it by #exercise and #template (fetchEvents must return, not hang on a CLOSED),
// finds the exercise by a NIP-50 search with a typo, receives a live event on a third instance, and verifies the id and signature of everything
// that comes back (NDK's own check and nostr-tools' verifyEvent). Exits 0 on success; on failure
// prints "FAIL [ndk] at step ...: ..." to stderr and exits 1 (2 on bad usage). Every wait is
// bounded, so the script cannot hang.

import { isDeepStrictEqual } from "node:util";

import NDK, { NDKEvent, NDKPrivateKeySigner, NDKSubscriptionCacheUsage } from "@nostr-dev-kit/ndk";
import { verifyEvent } from "nostr-tools/pure";
import WebSocket from "ws";

import { STEP_MS, check, startCheck, withTimeout } from "./harness.mjs";

// Node 20 has no global WebSocket; NDK uses the global one.
globalThis.WebSocket ??= WebSocket;

const EXERCISE_TEMPLATE = 33401;

const { url, progress, fail } = startCheck("ndk", "ndk_check.mjs");

function wire(event) {
  const raw = event instanceof NDKEvent ? event.rawEvent() : event;
  return {
    id: raw.id,
    pubkey: raw.pubkey,
    created_at: raw.created_at,
    kind: raw.kind,
    tags: raw.tags,
    content: raw.content,
    sig: raw.sig,
  };
}

// Both NDK's verification (not persisted, so it really runs) and nostr-tools' on a plain copy.
function verified(event) {
  check(event.verifySignature(false) === true, `NDK: bad signature on ${event.id}`);
  const copy = JSON.parse(JSON.stringify(wire(event)));
  check(verifyEvent(copy), `nostr-tools: bad id or signature on ${JSON.stringify(copy)}`);
  return copy;
}

function sameEvents(got, expected, what) {
  const key = (events) => events.map(wire).sort((a, b) => a.id.localeCompare(b.id));
  check(
    isDeepStrictEqual(key(got), key(expected)),
    `${what}: expected ${JSON.stringify(key(expected))}\n  got ${JSON.stringify(key(got))}`,
  );
}

// Every instance talks to this relay only: no outbox model, no user relays, every signature
// checked (NDK otherwise verifies only a sample).
async function open(signer) {
  const ndk = new NDK({
    explicitRelayUrls: [url],
    enableOutboxModel: false,
    autoConnectUserRelays: false,
    initialValidationRatio: 1,
    lowestValidationRatio: 1,
    signer,
  });
  ndk.on("event:invalid-sig", (event) => fail(`invalid signature reported: ${event.id}`));
  await withTimeout(ndk.connect(STEP_MS), "connection");
  check(ndk.pool.connectedRelays().length === 1, `not connected to ${url}`);
  return ndk;
}

const fetchOpts = {
  closeOnEose: true,
  groupable: false,
  cacheUsage: NDKSubscriptionCacheUsage.ONLY_RELAY,
  exclusiveRelay: true,
};

async function query(ndk, filters, what) {
  const events = await withTimeout(ndk.fetchEvents(filters, fetchOpts), `EOSE for ${what}`);
  return [...events].map(verified);
}

async function publish(event, what) {
  await event.sign();
  const relays = await withTimeout(event.publish(undefined, STEP_MS), `OK for ${what}`);
  check(relays.size === 1, `${what}: the relay did not accept it`);
  return event;
}

async function main() {
  const now = Math.floor(Date.now() / 1000);
  const signer = NDKPrivateKeySigner.generate();
  const pubkey = signer.pubkey;
  const dTag = `back-squat-${pubkey.slice(0, 8)}`;

  progress.step = "connect";
  const writer = await open(signer);
  const reader = await open(undefined);
  const listener = await open(undefined);

  progress.step = "publish";
  const note = await publish(
    new NDKEvent(writer, { kind: 1, created_at: now, tags: [], content: "NDK interop note" }),
    "kind 1",
  );
  const template = await publish(
    new NDKEvent(writer, {
      kind: EXERCISE_TEMPLATE,
      created_at: now,
      tags: [
        ["d", dTag],
        ["title", "Back squat"],
        ["format", "weight", "reps", "rpe", "set_type"],
        ["format_units", "kg", "count", "0-10", "enum"],
        ["equipment", "barbell"],
      ],
      content: "Bar on the upper back, squat below parallel, stand up.",
    }),
    "kind 33401",
  );
  check(note.pubkey === pubkey && template.pubkey === pubkey, "signed by another key");

  progress.step = "query by id";
  sameEvents(await query(reader, { ids: [note.id] }, "ids"), [note], "by id");
  const single = await withTimeout(reader.fetchEvent(note.id, fetchOpts), "fetchEvent by id");
  check(single !== null, "fetchEvent by id found nothing");
  sameEvents([verified(single)], [note], "fetchEvent by id");

  progress.step = "query by author and kind";
  sameEvents(
    await query(reader, { authors: [pubkey], kinds: [1] }, "authors+kinds"),
    [note],
    "by author, kind 1",
  );
  sameEvents(
    await query(reader, [{ authors: [pubkey], kinds: [1] }, { ids: [template.id] }], "two filters"),
    [note, template],
    "two filters",
  );

  progress.step = "query by #d";
  sameEvents(
    await query(reader, { kinds: [EXERCISE_TEMPLATE], authors: [pubkey], "#d": [dTag] }, "#d"),
    [template],
    "by #d",
  );
  sameEvents(
    await query(reader, { kinds: [EXERCISE_TEMPLATE], authors: [pubkey], "#d": ["other"] }, "#d"),
    [],
    "by another #d",
  );

  progress.step = "fitness tag filters";
  const coord = `${EXERCISE_TEMPLATE}:${pubkey}:${dTag}`;
  const templateCoord = `33402:${pubkey}:leg-day-${pubkey.slice(0, 8)}`;
  const record = await publish(
    new NDKEvent(writer, {
      kind: 1301,
      created_at: now,
      tags: [
        ["d", `record-${pubkey.slice(0, 8)}`],
        ["title", "Leg day"],
        ["template", templateCoord, ""],
        ["exercise", coord, "", "100", "5", "8", "normal"],
      ],
      content: "",
    }),
    "kind 1301",
  );
  sameEvents(await query(reader, { "#exercise": [coord] }, "#exercise"), [record], "by #exercise");
  sameEvents(
    await query(reader, { kinds: [1301], "#template": [templateCoord] }, "#template"),
    [record],
    "by #template",
  );
  sameEvents(
    await query(reader, { kinds: [1301], "#exercise": [`${coord}-other`] }, "#exercise"),
    [],
    "by another #exercise",
  );

  progress.step = "search (NIP-50)";
  sameEvents(
    await query(reader, { kinds: [EXERCISE_TEMPLATE], authors: [pubkey], search: "back sqat" }, "search"),
    [template],
    "search with a typo",
  );

  progress.step = "count (NIP-45)";
  const counted = await withTimeout(
    reader.count([{ authors: [pubkey] }], { timeout: STEP_MS }),
    "COUNT",
  );
  check(counted.relayResults.size === 1, "COUNT: no answer from the relay");
  check(counted.count === 3, `COUNT by author: expected 3, got ${counted.count}`);

  progress.step = "live subscription";
  let eosed;
  const eose = new Promise((resolve) => {
    eosed = resolve;
  });
  const live = new Promise((resolve, reject) => {
    listener.subscribe(
      { authors: [pubkey], kinds: [1], since: now },
      {
        closeOnEose: false,
        groupable: false,
        cacheUsage: NDKSubscriptionCacheUsage.ONLY_RELAY,
        exclusiveRelay: true,
      },
      {
        onEvent: (event) => {
          if (event.id !== note.id) resolve(verified(event));
        },
        onEose: () => eosed(),
        onClose: () => reject(new Error("subscription closed")),
      },
    );
  });
  await withTimeout(eose, "EOSE of the live subscription");
  const fresh = await publish(
    new NDKEvent(writer, {
      kind: 1,
      created_at: now,
      tags: [["t", "interop"]],
      content: "live from NDK",
    }),
    "the live event",
  );
  sameEvents([await withTimeout(live, "the live event")], [fresh], "live event");

  console.log(
    `OK [ndk] ${url}: publish, query (id, author+kind, #d, #exercise, #template, search), count, live`,
  );
}

main().then(
  () => process.exit(0),
  (err) => fail(err?.stack ?? String(err)),
);
