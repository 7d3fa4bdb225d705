/**
 * Secrets on a real node process: a GITFLEET_SECRET_<NAME> value reaches the task container but
 * never the control repo's history, the node's log output or the Temporal workflow history. The
 * same node records an over-limit task as "rejected". Credentials in a remote URL never reach the
 * output of `gitfleet status`.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Dockerode from 'dockerode';
import { Client, Connection } from '@temporalio/client';
import { LABEL_NODE } from '../../src/docker/labels';
import { nodeWorkflowId } from '../../src/core/types';
import { CLI, CliResult, git, makeBareRepo, remoteFile, runCli, tempDir } from '../input/helpers';

const IMAGE = 'gitfleet/busybox:local';
const NODE = `sec-secret-${randomBytes(4).toString('hex')}`;
const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;
const SECRET_HASH = createHash('sha256').update(SECRET).digest('hex');
const root = tempDir('gitfleet-secrets-');
const workdir = path.join(root, 'work');
const docker = new Dockerode();
let node: ChildProcess | undefined;
let nodeOutput = '';
// `gitfleet status` retries an unreachable remote for about a minute before it reports the error,
// so the credentials check starts first and runs beside the node test.
let statusRun: Promise<CliResult> | undefined;

beforeAll(() => {
  // Port 1 on the loopback address is closed, so git fails at connect time.
  statusRun = runCli(['status', '--repo', 'https://user:pa55w0rd-xyz@127.0.0.1:1/x.git'], {}, 110_000);
});

afterAll(async () => {
  if (node && node.exitCode === null) node.kill('SIGKILL');
  const pidFile = path.join(workdir, 'fence-keeper.pid');
  if (fs.existsSync(pidFile)) {
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Already gone: the keeper exits on its own once the node has stopped.
    }
  }
  const mine = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${NODE}`] } });
  for (const c of mine) await docker.getContainer(c.Id).remove({ force: true });
  fs.rmSync(root, { recursive: true, force: true });
});

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; node output:\n${nodeOutput.slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/**
 * Render the history as JSON with every payload decoded: the client returns payload bytes as
 * base64 strings in "data" and "encoding" fields, which a plain text search would miss.
 */
function historyText(history: unknown): string {
  return JSON.stringify(history, (key, value: unknown) => {
    if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
    if ((key === 'data' || key === 'encoding') && typeof value === 'string') return Buffer.from(value, 'base64').toString('utf8');
    if (typeof value === 'bigint') return String(value);
    return value;
  });
}

test('secret reaches the container and nowhere else', async () => {
  const bare = makeBareRepo(root, {
    'schedule.json': {
      tasks: [
        {
          id: 'secret-job',
          type: 'job',
          priority: 1,
          kind: 'batch',
          image: IMAGE,
          secrets: ['APP_TOKEN'],
          // The container prints the value itself and its hash, which only the real value gives.
          command: ['sh', '-c', 'echo "value=$APP_TOKEN"; printf %s "$APP_TOKEN" | sha256sum'],
        },
        { id: 'greedy', type: 'job', priority: 2, kind: 'batch', image: IMAGE, command: ['true'], resources: { memory_mb: 4096 } },
      ],
    },
    'roster.json': { nodes: [] },
    'assignments.json': { assignments: {} },
  });

  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS;
  if (!address) throw new Error('GITFLEET_TEST_TEMPORAL_ADDRESS is not set; run through jest, whose global setup starts Temporal');
  node = spawn(
    process.execPath,
    [CLI, 'node', '--repo', bare, '--id', NODE, '--workdir', workdir, '--temporal-address', address, '--task-expiry', '10', '--task-heartbeat', '2', '--roster-heartbeat', '3', '--idle-poll', '1', '--claim-jitter', '0.3', '--max-memory', '128'],
    { env: { ...process.env, GITFLEET_SECRET_APP_TOKEN: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  node.stdout!.on('data', (chunk: Buffer) => (nodeOutput += chunk.toString('utf8')));
  node.stderr!.on('data', (chunk: Buffer) => (nodeOutput += chunk.toString('utf8')));

  const assignments = await waitFor('both tasks to finish', 60_000, () => {
    const file = JSON.parse(remoteFile(bare, 'assignments.json')) as { assignments: Record<string, { status?: string; last_log?: string[]; last_error?: string }> };
    const done = file.assignments['secret-job']?.status === 'succeeded' && file.assignments.greedy?.status === 'rejected';
    return done ? file.assignments : undefined;
  });

  const exited = new Promise<number | null>((resolve) => node!.once('exit', (code) => resolve(code)));
  node.kill('SIGTERM');
  expect(await exited).toBe(0);

  // The container saw the real value: its hash matches, and the printed value was masked.
  expect(assignments['secret-job'].last_log).toEqual(['value=***', `${SECRET_HASH}  -`]);
  expect(assignments.greedy.last_error).toContain("resources.memory_mb 4096: above the node's maximum of 128 MB");

  const history = git(bare, ['log', '-p', '--all']);
  expect(history).toContain('secret-job');
  expect(history).not.toContain(SECRET);

  expect(nodeOutput).toContain('task finished');
  expect(nodeOutput).not.toContain(SECRET);

  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection });
    const workflowHistory = historyText(await client.workflow.getHandle(nodeWorkflowId(NODE)).fetchHistory());
    expect(workflowHistory).toContain('APP_TOKEN');
    expect(workflowHistory).toContain(SECRET_HASH);
    expect(workflowHistory).not.toContain(SECRET);
  } finally {
    await connection.close();
  }
});

test('URL credentials never reach status output', async () => {
  const result = await statusRun!;
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('https://***@127.0.0.1:1/x.git could not be reached');
  expect(`${result.stdout}${result.stderr}`).not.toContain('pa55w0rd-xyz');
});
