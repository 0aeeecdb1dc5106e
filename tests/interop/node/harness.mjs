// Shared scaffolding of the interop check scripts: usage, failure reporting and timeouts.

export const STEP_MS = 10_000;
export const OVERALL_MS = 45_000;

// Reads the relay URL from argv, arms the overall deadline and returns { url, progress, fail }.
// `progress.step` names the step under way, for the failure message.
export function startCheck(name, script) {
  const progress = { step: "start" };
  const fail = (message) => {
    console.error(`FAIL [${name}] at step "${progress.step}": ${message}`);
    process.exit(1);
  };
  const url = process.argv[2];
  if (!url || !/^wss?:\/\//.test(url)) {
    console.error(`usage: node ${script} ws://host:port`);
    process.exit(2);
  }
  setTimeout(() => fail(`did not finish within ${OVERALL_MS} ms`), OVERALL_MS).unref();
  process.on("unhandledRejection", (err) => fail(`unhandled rejection: ${err?.stack ?? err}`));
  return { url, progress, fail };
}

export function withTimeout(promise, what, ms = STEP_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}
