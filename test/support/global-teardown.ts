/**
 * Jest global teardown: stops the Temporal dev server that global setup
 * started and removes its data folder. Set GITFLEET_KEEP_TEST_TEMPORAL=1 to
 * keep the folder and its temporal.log for debugging.
 */
import * as fs from 'node:fs';
import { DevServer } from '../../src/temporal/dev-server';
import { TEST_SERVER_HANDLE, TEST_SERVER_STATE_FILE_ENV, TestServerState } from './global-setup';

const STOP_GRACE_MS = 10_000;
const POLL_INTERVAL_MS = 100;

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Stops a server known only by its pid: SIGTERM, then SIGKILL after STOP_GRACE_MS. */
async function stopByPid(pid: number): Promise<void> {
  if (!isRunning(pid)) {
    return;
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_GRACE_MS;
  while (isRunning(pid) && Date.now() < deadline) {
    await sleep(POLL_INTERVAL_MS);
  }
  if (isRunning(pid)) {
    process.kill(pid, 'SIGKILL');
  }
}

export default async function globalTeardown(): Promise<void> {
  const stateFile = process.env[TEST_SERVER_STATE_FILE_ENV];
  if (!stateFile) {
    // Global setup used a server given by GITFLEET_TEST_TEMPORAL_ADDRESS, or started none.
    return;
  }
  const state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as TestServerState;

  const handle = (globalThis as Record<symbol, unknown>)[TEST_SERVER_HANDLE] as DevServer | undefined;
  if (handle && handle.pid === state.pid) {
    await handle.stop();
  } else {
    await stopByPid(state.pid);
  }

  if (process.env.GITFLEET_KEEP_TEST_TEMPORAL === '1') {
    process.stdout.write(`Kept the Temporal test data in ${state.dataDir}\n`);
  } else {
    fs.rmSync(state.dataDir, { recursive: true, force: true });
  }
}
