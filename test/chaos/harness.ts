/**
 * Helpers for the safety tests and the safety benchmark: a bare control repo,
 * node processes started from the built CLI, a recorder of the Docker
 * engine's own start and die events, and cleanup that touches only what one
 * run created (its node processes, their fence keepers, containers labelled
 * with its node ids, its workflows).
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';

const execFileAsync = promisify(execFile);

export const PROJECT = findProject(__dirname);
export const CLI = path.join(PROJECT, 'dist', 'src', 'cli.js');
export const IMAGE = 'gitfleet/busybox:local';
export const LONG = process.env.GITFLEET_LONG === '1';

/** Fast settings from the brief: expiry 10 s, task heartbeat 2 s. */
export const FAST = {
  expiryS: 10,
  heartbeatS: 2,
  rosterS: 3,
  idlePollS: 1,
  jitterS: 0.3,
};
export const FAST_ARGS = [
  '--task-expiry', String(FAST.expiryS),
  '--task-heartbeat', String(FAST.heartbeatS),
  '--roster-heartbeat', String(FAST.rosterS),
  '--idle-poll', String(FAST.idlePollS),
  '--claim-jitter', String(FAST.jitterS),
];

function findProject(start: string): string {
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'tsconfig.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no project folder above ${start}`);
    dir = parent;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `fn` until it returns a value other than undefined/false, or throw after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

/** A short random tag that makes node and task ids unique per run. */
export function runTag(prefix: string): string {
  return `${prefix}${Date.now().toString(36).slice(-4)}${Math.random().toString(36).slice(2, 5)}`;
}

export function serviceTask(id: string): Record<string, unknown> {
  return { id, type: 'default', priority: 100, image: IMAGE, kind: 'service', command: ['sleep', '3600'] };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export async function cli(args: string[], timeoutMs = 120_000): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [CLI, ...args], { timeout: timeoutMs, env: { ...process.env, GITFLEET_LOG_LEVEL: 'warn' } });
  return stdout;
}

/** Create a bare control repo at `bare` seeded with these tasks. */
export async function initRepo(bare: string, tasks: Array<Record<string, unknown>>): Promise<void> {
  const schedule = path.join(path.dirname(bare), `schedule-${path.basename(bare)}.json`);
  fs.writeFileSync(schedule, JSON.stringify({ tasks }, null, 2));
  await cli(['init', '--repo', bare, '--schedule', schedule]);
}

export interface Claim {
  node_id?: string | null;
  epoch?: number;
  claim_token?: string;
  status?: string;
  task_heartbeat?: string;
  heartbeat_seq?: number;
}

/** Read a control file straight from the bare repo (no clone needed). */
export async function readControl<T = unknown>(bare: string, file: string): Promise<T> {
  const { stdout } = await execFileAsync('git', ['--git-dir', bare, 'show', `main:${file}`], { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as T;
}

export async function assignments(bare: string): Promise<Record<string, Claim>> {
  return (await readControl<{ assignments: Record<string, Claim> }>(bare, 'assignments.json')).assignments;
}

export async function scheduleIds(bare: string): Promise<string[]> {
  const file = await readControl<{ tasks: Array<{ id: string }> }>(bare, 'schedule.json');
  return file.tasks.map((t) => t.id);
}

/** Tasks held (claimed or running) by a node, from assignments.json. */
export function held(claims: Record<string, Claim>): Map<string, Claim> {
  const out = new Map<string, Claim>();
  for (const [id, c] of Object.entries(claims)) {
    if (c.node_id && ['claimed', 'running'].includes(c.status ?? 'claimed')) out.set(id, c);
  }
  return out;
}

export const docker = new Dockerode();

export interface Box {
  id: string;
  node: string;
  task: string;
  epoch: number;
  claim: string;
  running: boolean;
}

/** Containers gitfleet manages whose node label is one of `nodes`. */
export async function containers(nodes: Iterable<string>): Promise<Box[]> {
  const mine = new Set(nodes);
  const list = await docker.listContainers({ all: true, filters: { label: ['io.gitfleet.managed=true'] } });
  return list
    .filter((c) => mine.has(c.Labels['io.gitfleet.node']))
    .map((c) => ({
      id: c.Id,
      node: c.Labels['io.gitfleet.node'],
      task: c.Labels['io.gitfleet.task'],
      epoch: Number(c.Labels['io.gitfleet.epoch']),
      claim: c.Labels['io.gitfleet.claim'],
      running: c.State === 'running',
    }));
}

export interface RunInterval {
  container: string;
  task: string;
  node: string;
  epoch: number;
  startMs: number;
  endMs?: number;
}

/**
 * Records start and die events of managed containers from the engine's own
 * event stream and turns them into run intervals per task. Times are the
 * engine's (timeNano), one clock for every node on this host.
 */
export class EngineRecorder {
  readonly intervals = new Map<string, RunInterval>();
  private stream?: NodeJS.ReadableStream & { destroy?: () => void };
  private buffer = '';

  constructor(private readonly nodes: () => Set<string>) {}

  async start(): Promise<void> {
    const stream = (await docker.getEvents({
      filters: { type: ['container'], event: ['start', 'die'], label: ['io.gitfleet.managed=true'] },
    })) as NodeJS.ReadableStream & { destroy?: () => void };
    this.stream = stream;
    stream.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('utf8');
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) this.onEvent(JSON.parse(line));
      }
    });
    stream.on('error', () => undefined);
  }

  private onEvent(event: { Action: string; id: string; timeNano: number; Actor: { Attributes: Record<string, string> } }): void {
    const a = event.Actor.Attributes;
    if (!this.nodes().has(a['io.gitfleet.node'])) return;
    const ms = event.timeNano / 1e6;
    if (event.Action === 'start') {
      this.intervals.set(event.id, {
        container: event.id,
        task: a['io.gitfleet.task'],
        node: a['io.gitfleet.node'],
        epoch: Number(a['io.gitfleet.epoch']),
        startMs: ms,
      });
    } else if (event.Action === 'die') {
      const run = this.intervals.get(event.id);
      if (run && run.endMs === undefined) run.endMs = ms;
    }
  }

  stop(): void {
    this.stream?.destroy?.();
  }

  /** Engine start events seen so far. */
  get starts(): number {
    return this.intervals.size;
  }

  /** Largest overlap, in ms, of two run intervals of one task (runs still going end now). */
  maxOverlap(): { ms: number; task?: string; pair?: [RunInterval, RunInterval] } {
    return maxOverlap([...this.intervals.values()]);
  }
}

export function maxOverlap(runs: RunInterval[], nowMs = Date.now()): { ms: number; task?: string; pair?: [RunInterval, RunInterval] } {
  const byTask = new Map<string, RunInterval[]>();
  for (const r of runs) byTask.set(r.task, [...(byTask.get(r.task) ?? []), r]);
  let best: { ms: number; task?: string; pair?: [RunInterval, RunInterval] } = { ms: 0 };
  for (const [task, list] of byTask) {
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i];
        const b = list[j];
        const overlap = Math.min(a.endMs ?? nowMs, b.endMs ?? nowMs) - Math.max(a.startMs, b.startMs);
        if (overlap > best.ms) best = { ms: overlap, task, pair: [a, b] };
      }
    }
  }
  return best;
}

export interface NodeOptions {
  repo: string;
  extraArgs?: string[];
  /** Command prefix, e.g. ['faketime', '-f', '+300s']. */
  wrapper?: string[];
  maxTasks?: number;
}

interface NodeProc {
  id: string;
  workdir: string;
  options: NodeOptions;
  child?: ChildProcess;
  exited?: Promise<void>;
}

/** Node processes of one test run, all started from the built CLI. */
export class Fleet {
  readonly nodes = new Map<string, NodeProc>();
  readonly recorder: EngineRecorder;
  readonly dir: string;

  constructor(readonly temporalAddress: string, prefix = 'gitfleet-chaos-') {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.recorder = new EngineRecorder(() => new Set(this.nodes.keys()));
  }

  workdir(id: string): string {
    return path.join(this.dir, 'nodes', id);
  }

  start(id: string, options?: NodeOptions): void {
    const existing = this.nodes.get(id);
    const opts = options ?? existing?.options;
    if (!opts) throw new Error(`no options for node ${id}`);
    if (existing?.child && existing.child.exitCode === null && existing.child.signalCode === null) {
      throw new Error(`node ${id} is still running`);
    }
    const workdir = this.workdir(id);
    fs.mkdirSync(workdir, { recursive: true });
    const log = fs.openSync(path.join(workdir, 'node.log'), 'a');
    const args = [
      CLI, 'node',
      '--repo', opts.repo,
      '--id', id,
      '--workdir', workdir,
      '--temporal-address', this.temporalAddress,
      '--max-tasks', String(opts.maxTasks ?? 8),
      ...FAST_ARGS,
      ...(opts.extraArgs ?? []),
    ];
    const [cmd, ...rest] = opts.wrapper ? [...opts.wrapper, process.execPath, ...args] : [process.execPath, ...args];
    const child = spawn(cmd, rest, { stdio: ['ignore', log, log], env: { ...process.env, GITFLEET_LOG_LEVEL: process.env.GITFLEET_LOG_LEVEL ?? 'info' } });
    fs.closeSync(log);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.nodes.set(id, { id, workdir, options: opts, child, exited });
  }

  pid(id: string): number | undefined {
    return this.nodes.get(id)?.child?.pid;
  }

  alive(id: string): boolean {
    const child = this.nodes.get(id)?.child;
    return !!child && child.exitCode === null && child.signalCode === null;
  }

  /**
   * Send a signal to the node process only (its fence keeper is left alone).
   * A wrapper such as faketime forks the node as its child and waits, so the
   * signal goes to that child; the wrapper exits when it ends.
   */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const node = this.nodes.get(id);
    if (!node?.child?.pid || !this.alive(id)) return;
    const target = node.options.wrapper ? childPids(node.child.pid)[0] ?? node.child.pid : node.child.pid;
    try {
      process.kill(target, signal);
    } catch {
      // already gone
    }
    await Promise.race([node.exited, sleep(30_000)]);
  }

  keeperPid(id: string): number | undefined {
    const file = path.join(this.workdir(id), 'fence-keeper.pid');
    if (!fs.existsSync(file)) return undefined;
    const pid = Number(fs.readFileSync(file, 'utf8'));
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  log(id: string): string {
    const file = path.join(this.workdir(id), 'node.log');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  }

  /** Kill every node and fence keeper of this run, remove its containers and end its workflows. */
  async cleanup(): Promise<void> {
    this.recorder.stop();
    const ids = [...this.nodes.keys()];
    for (const id of ids) await this.kill(id, 'SIGKILL');
    for (const id of ids) {
      const pid = this.keeperPid(id);
      if (!pid) continue;
      const cmdline = fs.existsSync(`/proc/${pid}/cmdline`) ? fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      if (cmdline.includes('fence-keeper') && cmdline.includes(id)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const box of await containers(ids).catch(() => [])) {
      await docker.getContainer(box.id).remove({ force: true }).catch(() => undefined);
    }
    await terminateWorkflows(this.temporalAddress, ids).catch(() => undefined);
    if (process.env.GITFLEET_KEEP !== '1') fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function childPids(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

async function terminateWorkflows(address: string, ids: string[]): Promise<void> {
  const { Connection, Client } = await import('@temporalio/client');
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection });
    for (const id of ids) {
      await client.workflow.getHandle(`gitfleet-node-${id}`).terminate('test cleanup').catch(() => undefined);
    }
  } finally {
    await connection.close();
  }
}

/** Git state a node's clone must never be left in between edits. */
export function cloneProblems(workdir: string): string[] {
  const git = path.join(workdir, 'clone', '.git');
  const problems: string[] = [];
  if (!fs.existsSync(git)) return problems;
  for (const name of ['rebase-merge', 'rebase-apply', 'MERGE_HEAD', 'CHERRY_PICK_HEAD', 'REVERT_HEAD']) {
    if (fs.existsSync(path.join(git, name))) problems.push(`${workdir}: ${name}`);
  }
  return problems;
}

/** Lock file left in a clone, if any (a running git may hold one for a moment). */
export function indexLock(workdir: string): boolean {
  return fs.existsSync(path.join(workdir, 'clone', '.git', 'index.lock'));
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Check that every task held in assignments.json has exactly one running
 * container, on the holding node, with the claim's epoch and token, and that
 * no running container of these nodes lacks a current claim.
 */
export async function claimMismatches(bare: string, nodes: Iterable<string>): Promise<string[]> {
  const claims = held(await assignments(bare));
  const running = (await containers(nodes)).filter((c) => c.running);
  const problems: string[] = [];
  for (const box of running) {
    const c = claims.get(box.task);
    if (!c || c.node_id !== box.node || c.epoch !== box.epoch || c.claim_token !== box.claim) {
      problems.push(`container ${box.id.slice(0, 12)} of ${box.task} on ${box.node} epoch ${box.epoch} has no current claim`);
    }
  }
  const perTask = new Map<string, number>();
  for (const box of running) perTask.set(box.task, (perTask.get(box.task) ?? 0) + 1);
  for (const [task, n] of perTask) if (n > 1) problems.push(`${n} running containers for ${task}`);
  return problems;
}
