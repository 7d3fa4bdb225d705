/**
 * Jest global setup: checks that the Docker engine responds and starts one
 * Temporal dev server (no UI) for the whole run. Tests read its address from
 * GITFLEET_TEST_TEMPORAL_ADDRESS. Environment variables set here reach the
 * test workers because Jest starts them after global setup.
 *
 * When GITFLEET_TEST_TEMPORAL_ADDRESS is already set, that server is used and
 * none is started.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { DevServer, startDevServer } from '../../src/temporal/dev-server';

const execFileAsync = promisify(execFile);

/** Environment variable with the path of the JSON file that records the server for global teardown. */
export const TEST_SERVER_STATE_FILE_ENV = 'GITFLEET_TEST_TEMPORAL_STATE_FILE';
/** Key of the DevServer handle on globalThis; global teardown runs in the same process. */
export const TEST_SERVER_HANDLE = Symbol.for('gitfleet.testTemporalServer');

/** Contents of the state file. */
export interface TestServerState {
  pid: number;
  address: string;
  dataDir: string;
  logFile: string;
}
const DOCKER_INFO_TIMEOUT_MS = 20_000;

async function checkDockerEngine(): Promise<void> {
  try {
    await execFileAsync('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: DOCKER_INFO_TIMEOUT_MS });
  } catch (error) {
    const detail = error instanceof Error ? error.message.trim() : String(error);
    throw new Error(
      `The Docker engine is not reachable (\`docker info\` failed), and the tests need it. ` +
        `Run \`make setup\`, which installs and starts it.\n${detail}`,
    );
  }
}

export default async function globalSetup(): Promise<void> {
  await checkDockerEngine();

  if (process.env.GITFLEET_TEST_TEMPORAL_ADDRESS) {
    process.stdout.write(`\nUsing the Temporal server at ${process.env.GITFLEET_TEST_TEMPORAL_ADDRESS}\n`);
    return;
  }

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-jest-temporal-'));
  const server: DevServer = await startDevServer({ dataDir, ui: false });

  const state: TestServerState = { pid: server.pid, address: server.address, dataDir, logFile: server.logFile };
  const stateFile = path.join(dataDir, 'server.json');
  fs.writeFileSync(stateFile, JSON.stringify(state, null, 2));

  process.env.GITFLEET_TEST_TEMPORAL_ADDRESS = server.address;
  process.env[TEST_SERVER_STATE_FILE_ENV] = stateFile;
  (globalThis as Record<symbol, unknown>)[TEST_SERVER_HANDLE] = server;
  process.stdout.write(`\nStarted a Temporal dev server at ${server.address} (pid ${server.pid}, log ${server.logFile})\n`);
}
