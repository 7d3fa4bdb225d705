/**
 * Starts and stops a local Temporal development server (`temporal server
 * start-dev`) backed by a SQLite file. Used by the test suite's global setup
 * and by the `gitfleet demo` command. Every port it opens is on 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';

export interface DevServerOptions {
  /** Folder for the SQLite database and, by default, the server log. Created when missing. */
  dataDir: string;
  /** Frontend gRPC port on 127.0.0.1. A free port is picked when omitted. */
  port?: number;
  /** Web UI port, used only when `ui` is true. A free port is picked when omitted. */
  uiPort?: number;
  /** Serve the Web UI. Defaults to false, which starts the server with --headless. */
  ui?: boolean;
  /** File that receives the server's stdout and stderr (appended). Defaults to dataDir/temporal.log. */
  logFile?: string;
  /** Maximum time in milliseconds to wait for the frontend to respond. Defaults to 60000. */
  startTimeoutMs?: number;
}

export interface DevServer {
  /** Frontend gRPC address, as 127.0.0.1:port. */
  address: string;
  /** Web UI address, set only when the UI is served. */
  uiUrl?: string;
  /** Process id of the temporal CLI process. */
  pid: number;
  /** Server log file. */
  logFile: string;
  /** Sends SIGTERM to the server process, then SIGKILL if it is still running after 10 s. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const DEFAULT_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const PROBE_CONNECT_TIMEOUT_MS = 1_000;
const PROBE_INTERVAL_MS = 250;
const LOG_LINES_IN_ERRORS = 20;
/** Attempts when a picked free port is taken by another process before the server binds it. */
const MAX_PORT_ATTEMPTS = 3;

/**
 * Finds the project root: the nearest folder above `startDir` that contains
 * package.json. A package.json that tsc copied into dist/ is skipped.
 */
export function findProjectRoot(startDir: string = __dirname): string {
  let dir = path.resolve(startDir);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      const parent = path.dirname(dir);
      const isBuildCopy = path.basename(dir) === 'dist' && fs.existsSync(path.join(parent, 'package.json'));
      return isBuildCopy ? parent : dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`No package.json found in ${startDir} or any folder above it`);
    }
    dir = parent;
  }
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Reads TEMPORAL_CLI from the KEY=VALUE file that scripts/setup.sh writes. */
function readToolsEnvFile(file: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const match = /^\s*TEMPORAL_CLI=(.*)$/.exec(line);
    if (match) {
      return match[1].trim();
    }
  }
  return undefined;
}

/**
 * Resolves the temporal CLI binary. Order: the TEMPORAL_CLI environment
 * variable, the path recorded in .tools/env, .tools/bin/temporal, then PATH.
 */
export function resolveTemporalCli(projectRoot: string = findProjectRoot()): string {
  const fromEnv = process.env.TEMPORAL_CLI;
  if (fromEnv) {
    if (!isExecutableFile(fromEnv)) {
      throw new Error(
        `TEMPORAL_CLI=${fromEnv} is not an executable file. Point it at a temporal binary or unset it, then run \`make setup\`.`,
      );
    }
    return path.resolve(fromEnv);
  }

  const candidates: string[] = [];
  const fromToolsEnv = readToolsEnvFile(path.join(projectRoot, '.tools', 'env'));
  if (fromToolsEnv) {
    candidates.push(fromToolsEnv);
  }
  candidates.push(path.join(projectRoot, '.tools', 'bin', 'temporal'));
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir) {
      candidates.push(path.join(dir, 'temporal'));
    }
  }

  const found = candidates.find(isExecutableFile);
  if (!found) {
    throw new Error(
      `Temporal CLI not found: TEMPORAL_CLI is unset, ${path.join(projectRoot, '.tools', 'bin', 'temporal')} ` +
        'does not exist and no temporal binary is on PATH. Run `make setup` to build it.',
    );
  }
  return found;
}

/** Returns a TCP port that was free on 127.0.0.1 when checked. Another process may take it afterwards. */
export async function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('Could not read the port of a probe socket on 127.0.0.1'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

/** Returns up to `count` last lines of a file, reading at most its final 64 KiB. */
function readLastLines(file: string, count: number): string[] {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    fs.readSync(fd, buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').split('\n');
    if (lines.length > 0 && lines[lines.length - 1] === '') {
      lines.pop();
    }
    return lines.slice(-count);
  } catch {
    return [];
  } finally {
    if (fd !== undefined) {
      fs.closeSync(fd);
    }
  }
}

/** Returns what was appended to a file after byte `offset`, at most its final 64 KiB. */
function readLogSince(file: string, offset: number): string {
  try {
    const size = fs.statSync(file).size;
    const start = Math.max(offset, size - 64 * 1024);
    if (size <= start) {
      return '';
    }
    const fd = fs.openSync(file, 'r');
    try {
      const buffer = Buffer.alloc(size - start);
      fs.readSync(fd, buffer, 0, buffer.length, start);
      return buffer.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

function formatLogTail(logFile: string): string {
  const lines = readLastLines(logFile, LOG_LINES_IN_ERRORS);
  if (lines.length === 0) {
    return `(log ${logFile} is empty)`;
  }
  return `last ${lines.length} lines of ${logFile}:\n${lines.join('\n')}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  spawnError?: Error;
}

function describeExit(exit: ExitInfo): string {
  if (exit.spawnError) {
    return `could not be started: ${exit.spawnError.message}`;
  }
  if (exit.signal) {
    return `was killed by ${exit.signal}`;
  }
  return `exited with code ${exit.code}`;
}

/** Returns true once the frontend accepts a connection and describes the default namespace. */
async function isFrontendReady(address: string): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: PROBE_CONNECT_TIMEOUT_MS });
    const active = connection;
    await active.withDeadline(Date.now() + PROBE_CONNECT_TIMEOUT_MS, () =>
      active.workflowService.describeNamespace({ namespace: 'default' }),
    );
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

class PortInUseError extends Error {}

interface StartAttempt {
  binary: string;
  dataDir: string;
  port: number;
  uiPort?: number;
  logFile: string;
  deadline: number;
}

async function startOnce(attempt: StartAttempt): Promise<DevServer> {
  const address = `${HOST}:${attempt.port}`;
  const args = [
    'server',
    'start-dev',
    '--ip',
    HOST,
    '--port',
    String(attempt.port),
    '--db-filename',
    path.join(attempt.dataDir, 'temporal.db'),
    '--log-level',
    'warn',
  ];
  // The "default" namespace is always created by start-dev, so no --namespace flag is needed.
  if (attempt.uiPort === undefined) {
    args.push('--headless');
  } else {
    args.push('--ui-port', String(attempt.uiPort));
  }

  const logFd = fs.openSync(attempt.logFile, 'a');
  fs.writeSync(logFd, `\n--- ${new Date().toISOString()} ${attempt.binary} ${args.join(' ')}\n`);
  const logStart = fs.fstatSync(logFd).size;
  const child = spawn(attempt.binary, args, { stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);

  let exit: ExitInfo | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
    child.once('error', (error) => {
      exit = { code: null, signal: null, spawnError: error };
      resolve(exit);
    });
  });

  const waitForExit = async (timeoutMs: number): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const result = await Promise.race([exited.then(() => true), timedOut]);
    clearTimeout(timer);
    return result;
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exit !== undefined) {
        return;
      }
      child.kill('SIGTERM');
      if (!(await waitForExit(STOP_GRACE_MS))) {
        child.kill('SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };

  for (;;) {
    if (exit !== undefined) {
      const logTail = formatLogTail(attempt.logFile);
      if (/address already in use/i.test(readLogSince(attempt.logFile, logStart))) {
        throw new PortInUseError(`Temporal dev server could not bind ${address}; ${logTail}`);
      }
      throw new Error(`Temporal dev server (${attempt.binary}) ${describeExit(exit)} before it responded on ${address}; ${logTail}`);
    }
    // An exit during the probe ends the wait at once instead of after the probe's timeout.
    if (await Promise.race([isFrontendReady(address), exited.then(() => false)])) {
      break;
    }
    if (Date.now() >= attempt.deadline) {
      await stop();
      throw new Error(
        `Temporal dev server timed out: no response on ${address} within the start timeout; ${formatLogTail(attempt.logFile)}`,
      );
    }
    await waitForExit(PROBE_INTERVAL_MS);
  }

  return {
    address,
    uiUrl: attempt.uiPort === undefined ? undefined : `http://${HOST}:${attempt.uiPort}`,
    pid: child.pid as number,
    logFile: attempt.logFile,
    stop,
  };
}

/**
 * Starts `temporal server start-dev` on 127.0.0.1 and resolves once its
 * frontend responds. Rejects when the CLI is missing, when the server exits
 * early (with the last log lines), or when it does not respond in time.
 */
export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  const binary = resolveTemporalCli();
  const dataDir = path.resolve(options.dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  const logFile = path.resolve(options.logFile ?? path.join(dataDir, 'temporal.log'));
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const deadline = Date.now() + (options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);

  // Ports picked here can be taken by another process before the server binds
  // them, so a bind failure on a picked port is retried with new ports.
  const portsGiven = options.port !== undefined && (!options.ui || options.uiPort !== undefined);
  const attempts = portsGiven ? 1 : MAX_PORT_ATTEMPTS;
  for (let attemptNumber = 1; ; attemptNumber++) {
    const port = options.port ?? (await findFreePort());
    const uiPort = options.ui ? (options.uiPort ?? (await findFreePort())) : undefined;
    try {
      return await startOnce({ binary, dataDir, port, uiPort, logFile, deadline });
    } catch (error) {
      if (!(error instanceof PortInUseError) || attemptNumber >= attempts) {
        throw error;
      }
    }
  }
}
