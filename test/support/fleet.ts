/**
 * Test harness for running a real gitfleet fleet: a bare control repo in a
 * temporary folder, `gitfleet node` processes spawned from the dist build,
 * and the Docker engine's own view of their containers.
 *
 * Everything a Fleet starts carries node ids with this fleet's random suffix,
 * so several test runs can share the Temporal server and the Docker engine.
 * `cleanup()` stops only what this fleet started: node processes and fence
 * keepers by pid, containers by node label, node workflows by id.
 *
 * Set GITFLEET_KEEP_TEST_DIRS=1 to keep the temporary folder (node logs,
 * fence keeper logs, the control repo) after a run.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';
import { Client, Connection } from '@temporalio/client';
import { LABEL_EPOCH, LABEL_MANAGED, LABEL_NODE, LABEL_TASK } from '../../src/docker/labels';
import type { StatusReport } from '../../src/commands/status';

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------
// Constants

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
/** Path of the built CLI. Run `npm run build` before the integration tests. */
export const CLI = path.join(PROJECT_ROOT, 'dist', 'src', 'cli.js');
/** Image built by scripts/setup.sh: static busybox on an empty base. */
export const TEST_IMAGE = process.env.GITFLEET_TEST_IMAGE ?? 'gitfleet/busybox:local';

/** Node settings in seconds, short enough for tests. */
export const FAST = {
  taskExpiryS: 10,
  taskHeartbeatS: 2,
  rosterHeartbeatS: 3,
  idlePollS: 1,
  claimJitterS: 0.3,
};

export const FAST_NODE_ARGS = [
  '--task-expiry', String(FAST.taskExpiryS),
  '--task-heartbeat', String(FAST.taskHeartbeatS),
  '--roster-heartbeat', String(FAST.rosterHeartbeatS),
  '--idle-poll', String(FAST.idlePollS),
  '--claim-jitter', String(FAST.claimJitterS),
];

const CLI_TIMEOUT_MS = 60_000;
const DOCKER_CALL_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------------------
// Small helpers

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A short random suffix for ids that must be unique per test run. */
export function randomSuffix(): string {
  return `${Date.now().toString(36).slice(-4)}${randomBytes(3).toString('hex')}`;
}

export function temporalAddress(): string {
  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS;
  if (!address) throw new Error('GITFLEET_TEST_TEMPORAL_ADDRESS is not set: jest global setup did not run');
  return address;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface WaitOptions {
  intervalMs?: number;
  /** Extra text for the timeout message, computed only on timeout. */
  detail?: () => string | Promise<string>;
}

/**
 * Poll `fn` until it returns a value other than undefined, null or false, and
 * return that value. Errors thrown by `fn` count as "not yet". On timeout the
 * error names `what`, the time waited, the last value or error, and `detail`.
 */
export async function waitFor<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs: number,
  what: string,
  options: WaitOptions = {},
): Promise<T> {
  const interval = options.intervalMs ?? 250;
  const started = Date.now();
  const maxPolls = Math.ceil(timeoutMs / interval) + 1;
  let last: unknown;
  let lastError: unknown;
  for (let poll = 0; poll < maxPolls && Date.now() - started <= timeoutMs; poll++) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false) return value as T;
      last = value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    await sleep(interval);
  }
  const lines = [`timed out after ${Date.now() - started} ms waiting for ${what}`];
  if (lastError !== undefined) lines.push(`last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
  else lines.push(`last value: ${JSON.stringify(last)}`);
  if (options.detail) lines.push(await Promise.resolve(options.detail()).catch((err) => `(detail failed: ${String(err)})`));
  throw new Error(lines.join('\n'));
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI and collect its output. A non-zero exit is returned, not thrown. */
export async function runCli(args: string[], timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, ...args], {
      timeout: timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, GITFLEET_LOG_LEVEL: process.env.GITFLEET_LOG_LEVEL ?? 'warn' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === 'number' ? e.code : null, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
  }
}

/** Run git and return its trimmed stdout. */
export async function git(args: string[], cwd?: string): Promise<string> {
  const { stdout } = await execFileAsync('git', args, {
    cwd,
    timeout: 30_000,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'gitfleet test',
      GIT_AUTHOR_EMAIL: 'test@gitfleet.invalid',
      GIT_COMMITTER_NAME: 'gitfleet test',
      GIT_COMMITTER_EMAIL: 'test@gitfleet.invalid',
    },
  });
  return stdout.trim();
}

/** Read the commit id at the tip of `branch` in a bare repo. */
export function remoteHead(bareRepo: string, branch = 'main'): Promise<string> {
  return git(['--git-dir', bareRepo, 'rev-parse', `refs/heads/${branch}`]);
}

/** Read the raw text of a file at the tip of `branch` in a bare repo. */
export async function remoteText(bareRepo: string, file: string, branch = 'main'): Promise<string> {
  const { stdout } = await execFileAsync('git', ['--git-dir', bareRepo, 'show', `${branch}:${file}`], {
    timeout: 30_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

/** Count the commits on `branch` in a bare repo. */
export async function remoteCommitCount(bareRepo: string, branch = 'main'): Promise<number> {
  return Number(await git(['--git-dir', bareRepo, 'rev-list', '--count', `refs/heads/${branch}`]));
}

// ---------------------------------------------------------------------------
// Docker

let sharedDocker: Dockerode | undefined;

/** The local Docker engine (default socket). */
export function docker(): Dockerode {
  sharedDocker ??= new Dockerode();
  return sharedDocker;
}

/** A container as the Docker engine reports it, with its own start and finish times. */
export interface ContainerInfo {
  id: string;
  name: string;
  nodeId: string;
  taskId: string;
  epoch: number;
  /** Docker's State.Status: created, running, exited, ... */
  state: string;
  running: boolean;
  exitCode: number | null;
  /** State.StartedAt in ms since the epoch, null when it never started. */
  startedAt: number | null;
  /** State.FinishedAt in ms since the epoch, null while it runs. */
  finishedAt: number | null;
  startedAtText: string | null;
  finishedAtText: string | null;
}

export interface ContainerFilter {
  nodeIds?: Iterable<string>;
  taskId?: string;
  /** Only containers whose State is running. */
  runningOnly?: boolean;
}

function engineTime(text: string | undefined): number | null {
  if (!text || text.startsWith('0001-01-01')) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

/** Inspect one container, or return null when it no longer exists. */
export async function inspectContainer(id: string): Promise<ContainerInfo | null> {
  let info: Dockerode.ContainerInspectInfo;
  try {
    info = await docker().getContainer(id).inspect({ abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS) } as object);
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
  const labels = info.Config.Labels ?? {};
  const startedAtText = info.State.StartedAt && !info.State.StartedAt.startsWith('0001') ? info.State.StartedAt : null;
  const finishedAtText = info.State.FinishedAt && !info.State.FinishedAt.startsWith('0001') ? info.State.FinishedAt : null;
  return {
    id: info.Id,
    name: info.Name.replace(/^\//, ''),
    nodeId: labels[LABEL_NODE] ?? '',
    taskId: labels[LABEL_TASK] ?? '',
    epoch: Number(labels[LABEL_EPOCH]),
    state: info.State.Status,
    running: info.State.Running,
    exitCode: info.State.Running ? null : info.State.ExitCode,
    startedAt: engineTime(info.State.StartedAt),
    finishedAt: info.State.Running ? null : engineTime(info.State.FinishedAt),
    startedAtText,
    finishedAtText: info.State.Running ? null : finishedAtText,
  };
}

/**
 * gitfleet containers on the engine, stopped ones included, limited to the
 * given node ids (a container of any other node is never returned).
 */
export async function listContainers(filter: ContainerFilter & { nodeIds: Iterable<string> }): Promise<ContainerInfo[]> {
  const nodeIds = new Set(filter.nodeIds);
  if (nodeIds.size === 0) return [];
  const labels = [`${LABEL_MANAGED}=true`];
  if (filter.taskId !== undefined) labels.push(`${LABEL_TASK}=${filter.taskId}`);
  const listed = await docker().listContainers({
    all: true,
    filters: { label: labels },
    abortSignal: AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS),
  } as Dockerode.ContainerListOptions);
  const ours = listed.filter((c) => nodeIds.has(c.Labels?.[LABEL_NODE] ?? ''));
  const inspected = await Promise.all(ours.map((c) => inspectContainer(c.Id)));
  return inspected.filter((c): c is ContainerInfo => c !== null && (!filter.runningOnly || c.running));
}

/** Force-remove every gitfleet container of the given nodes and return how many were removed. */
export async function removeContainersOf(nodeIds: Iterable<string>): Promise<number> {
  const found = await listContainers({ nodeIds }).catch(() => []);
  let removed = 0;
  for (const c of found) {
    try {
      await docker().getContainer(c.id).remove({ force: true, v: true });
      removed++;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
  }
  return removed;
}

// ---------------------------------------------------------------------------
// Container monitor: the engine's record of every container of a fleet

/** One container's run, assembled from engine events and inspections. */
export interface ContainerRun {
  id: string;
  name: string;
  nodeId: string;
  taskId: string;
  epoch: number;
  /** Engine start time in ms (State.StartedAt, or the start event's time). */
  startedAt: number | null;
  /** Engine stop time in ms (State.FinishedAt, or the die event's time), null while running. */
  finishedAt: number | null;
  exitCode: number | null;
}

interface DockerEvent {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  timeNano?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

/**
 * Watches the containers of a fleet's nodes while a test runs. It follows
 * the engine's event stream (start and die, with the engine's timestamps),
 * inspects containers to read State.StartedAt and State.FinishedAt, and polls
 * the engine every `pollMs` to find moments when one task has more than one
 * running container. Stop it with `stop()`, or it stops by itself after `maxMs`.
 */
export class ContainerMonitor {
  readonly runs = new Map<string, ContainerRun>();
  /** Most running containers seen at one poll, by task id. */
  readonly maxRunningByTask = new Map<string, number>();
  /** Polls at which one task had two or more running containers. */
  readonly overlaps: Array<{ at: number; taskId: string; containers: string[] }> = [];
  polls = 0;
  private stream: NodeJS.ReadableStream | undefined;
  private stopped = false;
  private pollLoop: Promise<void> | undefined;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly nodeIds: () => Iterable<string>,
    private readonly pollMs = 200,
    private readonly maxMs = 10 * 60_000,
  ) {}

  async start(): Promise<void> {
    const since = Math.floor(Date.now() / 1000) - 1;
    this.stream = (await docker().getEvents({
      since,
      filters: { type: ['container'], label: [`${LABEL_MANAGED}=true`], event: ['start', 'die'] },
    })) as NodeJS.ReadableStream;
    let buffer = '';
    this.stream.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) this.onEvent(JSON.parse(line) as DockerEvent);
        newline = buffer.indexOf('\n');
      }
    });
    this.stream.on('error', () => undefined);
    this.pollLoop = this.poll();
  }

  private ours(nodeId: string | undefined): boolean {
    return nodeId !== undefined && new Set(this.nodeIds()).has(nodeId);
  }

  private run(id: string, attrs: Record<string, string>): ContainerRun {
    let run = this.runs.get(id);
    if (!run) {
      run = {
        id,
        name: attrs.name ?? '',
        nodeId: attrs[LABEL_NODE] ?? '',
        taskId: attrs[LABEL_TASK] ?? '',
        epoch: Number(attrs[LABEL_EPOCH]),
        startedAt: null,
        finishedAt: null,
        exitCode: null,
      };
      this.runs.set(id, run);
    }
    return run;
  }

  private onEvent(event: DockerEvent): void {
    const attrs = event.Actor?.Attributes ?? {};
    const id = event.Actor?.ID ?? event.id;
    if (!id || !this.ours(attrs[LABEL_NODE])) return;
    const run = this.run(id, attrs);
    const at = event.timeNano ? event.timeNano / 1e6 : Date.now();
    const action = event.Action ?? event.status;
    if (action === 'start') run.startedAt ??= at;
    if (action === 'die') {
      run.finishedAt ??= at;
      if (attrs.exitCode !== undefined) run.exitCode = Number(attrs.exitCode);
    }
    // Prefer the engine's State times, read before the container is removed if possible.
    this.track(this.refine(id));
  }

  private track(work: Promise<void>): void {
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work));
  }

  private async refine(id: string): Promise<void> {
    const info = await inspectContainer(id).catch(() => null);
    if (!info) return;
    this.merge(info);
  }

  private merge(info: ContainerInfo): void {
    const run = this.run(info.id, {
      name: info.name,
      [LABEL_NODE]: info.nodeId,
      [LABEL_TASK]: info.taskId,
      [LABEL_EPOCH]: String(info.epoch),
    });
    if (info.startedAt !== null) run.startedAt = info.startedAt;
    if (info.finishedAt !== null) {
      run.finishedAt = info.finishedAt;
      run.exitCode = info.exitCode;
    }
  }

  private async poll(): Promise<void> {
    const deadline = Date.now() + this.maxMs;
    const maxPolls = Math.ceil(this.maxMs / this.pollMs);
    while (!this.stopped && Date.now() < deadline && this.polls < maxPolls) {
      this.polls++;
      const listed = await listContainers({ nodeIds: this.nodeIds() }).catch(() => undefined);
      if (listed) {
        const runningByTask = new Map<string, string[]>();
        for (const c of listed) {
          this.merge(c);
          if (c.running) runningByTask.set(c.taskId, [...(runningByTask.get(c.taskId) ?? []), c.id]);
        }
        for (const [taskId, ids] of runningByTask) {
          this.maxRunningByTask.set(taskId, Math.max(this.maxRunningByTask.get(taskId) ?? 0, ids.length));
          if (ids.length > 1) this.overlaps.push({ at: Date.now(), taskId, containers: ids });
        }
      }
      await sleep(this.pollMs);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    (this.stream as unknown as { destroy?: () => void } | undefined)?.destroy?.();
    await this.pollLoop;
    await Promise.all([...this.pending]);
  }

  /** Runs of one task, in order of start time. */
  runsOf(taskId: string): ContainerRun[] {
    return [...this.runs.values()]
      .filter((r) => r.taskId === taskId)
      .sort((a, b) => (a.startedAt ?? Infinity) - (b.startedAt ?? Infinity));
  }

  /**
   * Return the pairs of runs of one task whose [startedAt, finishedAt] intervals overlap.
   * A run still going counts as ending now.
   */
  overlappingRuns(taskId: string): Array<[ContainerRun, ContainerRun]> {
    const runs = this.runsOf(taskId).filter((r) => r.startedAt !== null);
    const pairs: Array<[ContainerRun, ContainerRun]> = [];
    for (let i = 0; i < runs.length; i++) {
      for (let j = i + 1; j < runs.length; j++) {
        const a = runs[i];
        const b = runs[j];
        const aEnd = a.finishedAt ?? Date.now();
        const bEnd = b.finishedAt ?? Date.now();
        if (a.startedAt! < bEnd && b.startedAt! < aEnd) pairs.push([a, b]);
      }
    }
    return pairs;
  }
}

// ---------------------------------------------------------------------------
// Node processes

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A spawned `gitfleet node` process. */
export class NodeHandle {
  private exitInfo: ExitInfo | undefined;
  private readonly exited: Promise<ExitInfo>;

  constructor(
    readonly id: string,
    readonly workdir: string,
    readonly logPath: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** The exit code and signal once the process has ended. */
  get exit(): ExitInfo | undefined {
    return this.exitInfo;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) process.kill(this.pid, signal);
  }

  /** Wait for the process to end, or throw with the log tail when it does not end in time. */
  async waitExit(timeoutMs: number): Promise<ExitInfo> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    const result = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (!result) {
      throw new Error(`node ${this.id} (pid ${this.pid}) did not exit within ${timeoutMs} ms\n${this.logTail()}`);
    }
    return result;
  }

  /** Pid of the node's fence keeper, from `<workdir>/fence-keeper.pid`. */
  fenceKeeperPid(): number | undefined {
    try {
      const pid = Number(fs.readFileSync(path.join(this.workdir, 'fence-keeper.pid'), 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** The last lines of the node's log, for failure messages. */
  logTail(lines = 30): string {
    let text = '';
    try {
      text = fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return `(no log at ${this.logPath})`;
    }
    return [`--- last lines of ${this.logPath}`, ...text.trimEnd().split('\n').slice(-lines)].join('\n');
  }
}

// ---------------------------------------------------------------------------
// Fleet

export interface StartNodeOptions {
  /** Work folder, `<fleet dir>/nodes/<id>` by default. Reuse one to restart a node. */
  workdir?: string;
  /** Extra environment variables for the node process. */
  env?: Record<string, string>;
}

/** Raw assignments.json entry, with any extra fields a node wrote. */
export type RawAssignment = Record<string, unknown> & {
  node_id?: string | null;
  status?: string;
  epoch?: number;
  exit_code?: number | null;
  last_log?: string[];
  last_error?: string | null;
};

export class Fleet {
  readonly dir: string;
  readonly repo: string;
  readonly suffix = randomSuffix();
  readonly nodes: NodeHandle[] = [];
  /** Node ids this fleet created, whether or not a process runs. */
  readonly nodeIds = new Set<string>();
  private readonly fenceKeeperPids = new Set<number>();
  private readonly monitors: ContainerMonitor[] = [];

  constructor(label = 'fleet') {
    this.dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `gitfleet-${label}-`)));
    this.repo = path.join(this.dir, 'remote.git');
  }

  /** A node id unique to this fleet, e.g. `a-k3x9f01ab2`. */
  nodeId(name: string): string {
    const id = `${name}-${this.suffix}`;
    this.nodeIds.add(id);
    return id;
  }

  /** Create the bare control repo with `gitfleet init`, seeded with `schedule` and optional fleet settings. */
  async initRepo(schedule: { tasks: unknown[]; [key: string]: unknown }, settings?: Record<string, unknown>): Promise<void> {
    const file = path.join(this.dir, 'schedule.seed.json');
    fs.writeFileSync(file, `${JSON.stringify(schedule, null, 2)}\n`);
    const args = ['init', '--repo', this.repo, '--schedule', file];
    if (settings) {
      const settingsFile = path.join(this.dir, 'fleet.seed.json');
      fs.writeFileSync(settingsFile, `${JSON.stringify({ settings }, null, 2)}\n`);
      args.push('--settings', settingsFile);
    }
    const result = await runCli(args);
    if (result.code !== 0) {
      throw new Error(`gitfleet init failed (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
    }
  }

  /** Spawn `gitfleet node` with the fast test settings. */
  startNode(id: string, extraArgs: string[] = [], options: StartNodeOptions = {}): NodeHandle {
    this.nodeIds.add(id);
    const workdir = options.workdir ?? path.join(this.dir, 'nodes', id);
    fs.mkdirSync(workdir, { recursive: true });
    const logPath = path.join(this.dir, `node-${id}-${this.nodes.filter((n) => n.id === id).length + 1}.log`);
    const out = fs.openSync(logPath, 'a');
    const args = [
      CLI,
      'node',
      '--repo', this.repo,
      '--id', id,
      '--workdir', workdir,
      '--temporal-address', temporalAddress(),
      ...FAST_NODE_ARGS,
      ...extraArgs,
    ];
    const child = spawn(process.execPath, args, {
      cwd: this.dir,
      stdio: ['ignore', out, out],
      env: { ...process.env, GITFLEET_LOG_LEVEL: process.env.GITFLEET_LOG_LEVEL ?? 'info', ...options.env },
    });
    fs.closeSync(out);
    const handle = new NodeHandle(id, workdir, logPath, child);
    this.nodes.push(handle);
    return handle;
  }

  /** Record the node's current fence keeper pid so cleanup can stop it. */
  rememberFenceKeeper(node: NodeHandle): number | undefined {
    const pid = node.fenceKeeperPid();
    if (pid !== undefined) this.fenceKeeperPids.add(pid);
    return pid;
  }

  /** `gitfleet status --json`, parsed. */
  async status(): Promise<StatusReport> {
    const result = await runCli(['status', '--repo', this.repo, '--json']);
    if (result.code !== 0) throw new Error(`gitfleet status failed (exit ${result.code}): ${result.stderr}`);
    return JSON.parse(result.stdout) as StatusReport;
  }

  /** assignments.json at the tip of the remote branch, read straight from the bare repo. */
  async assignments(): Promise<Record<string, RawAssignment>> {
    const file = JSON.parse(await remoteText(this.repo, 'assignments.json')) as { assignments: Record<string, RawAssignment> };
    return file.assignments;
  }

  /** The containers of this fleet's nodes, as the Docker engine reports them. */
  containers(filter: ContainerFilter = {}): Promise<ContainerInfo[]> {
    return listContainers({ ...filter, nodeIds: filter.nodeIds ?? this.nodeIds });
  }

  /** Start a ContainerMonitor over this fleet's nodes. Cleanup stops it. */
  async monitor(pollMs = 200): Promise<ContainerMonitor> {
    const monitor = new ContainerMonitor(() => this.nodeIds, pollMs);
    await monitor.start();
    this.monitors.push(monitor);
    return monitor;
  }

  /** waitFor, with every node's log tail added to the timeout message. */
  waitFor<T>(
    fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
    timeoutMs: number,
    what: string,
    intervalMs = 500,
  ): Promise<T> {
    return waitFor(fn, timeoutMs, what, { intervalMs, detail: () => this.logTails() });
  }

  logTails(lines = 15): string {
    return this.nodes.map((n) => n.logTail(lines)).join('\n');
  }

  /**
   * Stop everything this fleet started: node processes (SIGKILL, by pid),
   * their fence keepers (by the pid each node wrote), node workflows on the
   * Temporal server, and every container labelled with one of its node ids.
   */
  async cleanup(): Promise<void> {
    await Promise.all(this.monitors.map((m) => m.stop()));
    for (const node of this.nodes) {
      this.rememberFenceKeeper(node);
      if (node.running) {
        node.kill('SIGKILL');
        await node.waitExit(10_000).catch(() => undefined);
      }
    }
    for (const pid of this.fenceKeeperPids) {
      if (isAlive(pid) && isFenceKeeperOf(pid, this.nodeIds)) process.kill(pid, 'SIGKILL');
    }
    await removeContainersOf(this.nodeIds);
    await this.terminateWorkflows().catch(() => undefined);
    if (process.env.GITFLEET_KEEP_TEST_DIRS === '1') {
      process.stdout.write(`kept test folder ${this.dir}\n`);
    } else {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }

  private async terminateWorkflows(): Promise<void> {
    const connection = await Connection.connect({ address: temporalAddress(), connectTimeout: 5_000 });
    try {
      const client = new Client({ connection, namespace: 'default' });
      for (const id of this.nodeIds) {
        await client.workflow
          .getHandle(`gitfleet-node-${id}`)
          .terminate('test cleanup')
          .catch(() => undefined);
      }
    } finally {
      await connection.close();
    }
  }
}

/** Whether `pid` runs a fence keeper for one of `nodeIds` (guards against a reused pid). */
function isFenceKeeperOf(pid: number, nodeIds: Set<string>): boolean {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (!cmdline.includes('fence-keeper')) return false;
    const id = cmdline[cmdline.indexOf('--id') + 1];
    return nodeIds.has(id);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Schedule entries

/** A service task running `command` in the test image. */
export function serviceTask(id: string, command: string[] = ['sleep', '3600'], extra: Record<string, unknown> = {}) {
  return { id, type: 'test', priority: 10, image: TEST_IMAGE, kind: 'service', command, ...extra };
}

/** A batch task running `script` with `sh -c` in the test image. */
export function batchTask(id: string, script: string, extra: Record<string, unknown> = {}) {
  return { id, type: 'test', priority: 10, image: TEST_IMAGE, kind: 'batch', command: ['sh', '-c', script], ...extra };
}

/** Write a line to the test output (visible with jest's default reporter). */
export function note(text: string): void {
  process.stdout.write(`${text}\n`);
}
