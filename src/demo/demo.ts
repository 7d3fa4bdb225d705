import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Dockerode from 'dockerode';
import { Client, Connection } from '@temporalio/client';
import { findProjectRoot, startDevServer, DevServer } from '../temporal/dev-server';
import { initControlRepo } from '../commands/repo-ops';
import { buildStatus, renderStatus, StatusReport } from '../commands/status';
import { ControlRepo } from '../git/control-repo';
import { createLogger } from '../util/logger';
import { nodeWorkflowId } from '../core/types';
import { LABEL_MANAGED, LABEL_NODE, LABEL_TASK } from '../docker/labels';
import { liveFenceKeeper } from '../node/lease';

export interface DemoOptions {
  keep: boolean;
  expiryS: number;
}

/** Expected end state of each example task. */
const EXPECTED: Record<string, string> = {
  web: 'running',
  ticker: 'running',
  wordcount: 'succeeded',
  'broken-import': 'failed',
};

const NODE_IDS = ['demo-a', 'demo-b', 'demo-c'];

interface DemoNode {
  id: string;
  workdir: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

const started = Date.now();

function say(message: string): void {
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[${seconds}s] ${message}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Run the embedded demo: a local Temporal dev server with its Web UI, a bare
 * control repo seeded from examples/, three node processes and real
 * containers. Returns the process exit code: 0 only when every example task
 * reached its expected state and no demo container is left.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const root = findProjectRoot();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-demo-'));
  const logger = createLogger('gitfleet-demo');
  logger.level = 'warn';
  const docker = new Dockerode();
  const nodes = new Map<string, DemoNode>();
  let server: DevServer | undefined;
  let ok = true;
  say(`demo folder ${dir}`);

  try {
    server = await startDevServer({ dataDir: path.join(dir, 'temporal'), ui: true });
    say(`Temporal dev server at ${server.address}, Web UI at ${server.uiUrl}`);

    const data = path.join(dir, 'data');
    fs.cpSync(path.join(root, 'examples', 'data'), data, { recursive: true });
    const schedule = JSON.parse(fs.readFileSync(path.join(root, 'examples', 'schedule.json'), 'utf8'));
    for (const task of schedule.tasks) {
      for (const mount of task.mounts ?? []) if (mount.source === 'examples/data') mount.source = data;
    }
    const remote = path.join(dir, 'control.git');
    await initControlRepo(remote, 'main', logger, { 'schedule.json': schedule });
    say(`control repo ${remote} seeded with ${schedule.tasks.length} tasks from examples/schedule.json`);

    const heartbeatS = Math.max(1, Math.round(options.expiryS / 5));
    const nodeArgs = (id: string, workdir: string) => [
      path.join(root, 'dist', 'src', 'cli.js'),
      'node',
      '--repo', remote,
      '--id', id,
      '--workdir', workdir,
      '--temporal-address', server!.address,
      '--task-expiry', String(options.expiryS),
      '--task-heartbeat', String(heartbeatS),
      '--roster-heartbeat', String(heartbeatS * 2),
      '--idle-poll', '2',
      '--allow-mount', data,
      '--max-tasks', '2',
    ];
    const startNode = (id: string) => {
      const workdir = path.join(dir, 'nodes', id);
      fs.mkdirSync(workdir, { recursive: true });
      const log = fs.openSync(path.join(workdir, 'node.log'), 'a');
      const child = spawn(process.execPath, nodeArgs(id, workdir), { stdio: ['ignore', log, log] });
      fs.closeSync(log);
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      nodes.set(id, { id, workdir, child, exited });
      say(`node ${id} started (pid ${child.pid}, log ${path.join(workdir, 'node.log')})`);
    };
    for (const id of NODE_IDS) startNode(id);

    const repo = new ControlRepo({ remote, dir: path.join(dir, 'observer'), logger });
    const read = async () => buildStatus(await repo.snapshot());
    const seen = new Map<string, string>();
    const report = (status: StatusReport) => {
      for (const task of status.tasks) {
        const line = `${task.status}${task.owner ? ` on ${task.owner}` : ''}${task.epoch ? ` (epoch ${task.epoch})` : ''}`;
        if (seen.get(task.id) === line) continue;
        seen.set(task.id, line);
        const extra = task.exitCode !== undefined && task.exitCode !== null ? `, exit code ${task.exitCode}` : '';
        say(`task ${task.id}: ${line}${extra}`);
      }
    };
    const waitFor = async (what: string, timeoutMs: number, done: (s: StatusReport) => boolean) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const status = await read();
        report(status);
        if (done(status)) return status;
        await sleep(1000);
      }
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    };

    say('waiting for every example task to reach its expected state');
    await waitFor('the example tasks', 180_000, (s) =>
      Object.entries(EXPECTED).every(([id, status]) => s.tasks.find((t) => t.id === id)?.status === status),
    );
    const web = await runningContainer(docker, 'web');
    if (web) {
      const port = Object.values(web.Ports ?? []).find((p) => p.PrivatePort === 8080)?.PublicPort;
      const page = port ? await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text()).catch(() => '') : '';
      say(`web answers on http://127.0.0.1:${port}/: ${page.trim()}`);
    }

    const before = (await read()).tasks.find((t) => t.id === 'web');
    const victim = before?.owner ? nodes.get(before.owner) : undefined;
    if (!victim) throw new Error('task web has no owner among the demo nodes');
    say(`killing node ${victim.id} with SIGKILL while it runs web (expiry ${options.expiryS} s)`);
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await victim.exited;
    const after = await waitFor('web to run on another node', options.expiryS * 1000 + 60_000, (s) => {
      const task = s.tasks.find((t) => t.id === 'web');
      return task?.status === 'running' && task.owner !== victim.id && task.owner !== null;
    });
    const takeoverS = (Date.now() - killedAt) / 1000;
    const owner = after.tasks.find((t) => t.id === 'web')?.owner;
    say(`takeover: web runs on ${owner} ${takeoverS.toFixed(1)} s after the SIGKILL (expiry ${options.expiryS} s)`);
    const copies = (await docker.listContainers({ filters: { label: [`${LABEL_TASK}=web`, `${LABEL_MANAGED}=true`] } })).filter((c) =>
      NODE_IDS.includes(c.Labels[LABEL_NODE]),
    );
    say(`running containers for web: ${copies.length}`);
    if (copies.length !== 1) ok = false;

    say(`restarting node ${victim.id}: it re-attaches to workflow ${nodeWorkflowId(victim.id)}`);
    startNode(victim.id);
    await sleep(5000);

    console.log(renderStatus(await read()));
    console.log('');
    console.log(`Temporal Web UI:   ${server.uiUrl}/namespaces/default/workflows`);
    console.log(`Workflow list:     ${process.env.TEMPORAL_CLI ?? 'temporal'} workflow list --address ${server.address}`);
    console.log(`One node's state:  ${process.env.TEMPORAL_CLI ?? 'temporal'} workflow query --address ${server.address} --workflow-id ${nodeWorkflowId('demo-a')} --type status`);
    console.log('');
    if (!options.keep) console.log('The demo folder and its node logs are removed at the end; run `gitfleet demo --keep` to keep them.');
    if (options.keep) {
      say('--keep: press Ctrl-C to shut the fleet down');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
  } catch (err) {
    ok = false;
    say(`demo failed: ${(err as Error).message}`);
  } finally {
    say('shutting the fleet down: SIGTERM drains each node (release tasks, stop containers)');
    for (const node of nodes.values()) node.child.kill('SIGTERM');
    for (const node of nodes.values()) {
      const code = await Promise.race([node.exited, sleep(60_000).then(() => 'timeout' as const)]);
      if (code === 'timeout') {
        say(`node ${node.id} did not stop within 60 s; killing it`);
        node.child.kill('SIGKILL');
        ok = false;
      }
    }
    if (server) await terminateLeftovers(server.address);
    const left = await waitForNoContainers(docker, 30_000);
    say(left === 0 ? 'no demo container is left' : `${left} demo containers are still there`);
    if (left !== 0) ok = false;
    stopKeepers(dir);
    if (server) await server.stop();
    if (!options.keep) fs.rmSync(dir, { recursive: true, force: true });
  }
  say(ok ? 'demo finished: every task reached its expected state' : 'demo FAILED');
  return ok ? 0 : 1;
}

async function runningContainer(docker: Dockerode, taskId: string) {
  const list = await docker.listContainers({ filters: { label: [`${LABEL_TASK}=${taskId}`] } });
  return list.find((c) => NODE_IDS.includes(c.Labels[LABEL_NODE]));
}

async function waitForNoContainers(docker: Dockerode, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const list = (await docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`] } })).filter((c) =>
      NODE_IDS.includes(c.Labels[LABEL_NODE]),
    );
    if (list.length === 0 || Date.now() > deadline) return list.length;
    await sleep(1000);
  }
}

/** Terminate node workflows whose process is gone, so the dev server holds nothing open. */
async function terminateLeftovers(address: string): Promise<void> {
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection });
    for (const id of NODE_IDS) {
      const handle = client.workflow.getHandle(nodeWorkflowId(id));
      const description = await handle.describe().catch(() => undefined);
      if (description?.status.name === 'RUNNING') await handle.terminate('demo finished');
    }
  } finally {
    await connection.close();
  }
}

/** Stop fence keepers that outlived their node (a killed node's keeper exits on its own once idle). */
function stopKeepers(dir: string): void {
  for (const id of NODE_IDS) {
    const pid = liveFenceKeeper(path.join(dir, 'nodes', id), id);
    if (pid !== undefined) process.kill(pid, 'SIGTERM');
  }
}
