/**
 * Commands and environment values with shell metacharacters reach the container as exact data:
 * nothing between the control repo and the container runs a shell.
 */
import { randomBytes } from 'node:crypto';
import Dockerode from 'dockerode';
import pino from 'pino';
import { ContainerRuntime } from '../../src/docker/runtime';
import { LABEL_NODE } from '../../src/docker/labels';
import { parseSchedule } from '../../src/state/control-files';

const IMAGE = 'gitfleet/busybox:local';
const NODE = `sec-shell-${randomBytes(4).toString('hex')}`;
const docker = new Dockerode();
const runtime = new ContainerRuntime({ docker, logger: pino({ level: 'silent' }) });

afterAll(async () => {
  const mine = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${NODE}`] } });
  for (const c of mine) await docker.getContainer(c.Id).remove({ force: true });
});

const HOSTILE = [
  `it's "quoted"`,
  'a; touch /tmp/pwned; echo b',
  '$(id -u) and `id -u`',
  'line one\nline two',
  '${HOME} | cat > /dev/null && rm -rf /',
  "'; exit 7; '",
];

async function runToEnd(taskId: string, command: string[], env: Record<string, string>): Promise<string> {
  const started = await runtime.startTask({ nodeId: NODE, taskId, epoch: 1, claimToken: taskId, spec: { image: IMAGE, command }, env, policy: { allowedMounts: [] } });
  const waited = await runtime.waitExit(started.containerId, 20_000);
  expect(waited).toEqual({ exited: true, exitCode: 0 });
  const result = await docker.getContainer(started.containerId).logs({ stdout: true, stderr: true, follow: false });
  await runtime.stopAndRemove(started.containerId, { stopTimeoutS: 1 });
  return demux(result as unknown as Buffer);
}

/** Join the stdout and stderr frames of a non-TTY log stream. */
function demux(raw: Buffer): string {
  const parts: Buffer[] = [];
  for (let i = 0; i + 8 <= raw.length; ) {
    const size = raw.readUInt32BE(i + 4);
    parts.push(raw.subarray(i + 8, i + 8 + size));
    i += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

test('command arguments arrive unchanged', async () => {
  // printf prints each argument on its own, framed, so any split or expansion shows.
  const output = await runToEnd('args', ['printf', '[%s]\\n', ...HOSTILE], {});
  expect(output).toBe(HOSTILE.map((value) => `[${value}]\n`).join(''));
});

test('env values arrive unchanged', async () => {
  const env = Object.fromEntries(HOSTILE.map((value, i) => [`HOSTILE_${i}`, value]));
  const output = await runToEnd('env', ['env'], env);
  for (const [name, value] of Object.entries(env)) expect(output).toContain(`${name}=${value}\n`);
});

test('hostile task ids never reach the engine', () => {
  const ids = ['a;rm -rf /', '$(id)', '`id`', 'a"b', "a'b", 'a\nb', '../etc', '-rf'];
  const parsed = parseSchedule(Buffer.from(JSON.stringify({ tasks: ids.map((id) => ({ id, type: 't', priority: 1, image: IMAGE })) })));
  if (!parsed.ok) throw parsed.error;
  expect(parsed.value.tasks).toEqual([]);
  expect(parsed.value.problems.map((p) => p.taskId)).toEqual(ids);
  for (const problem of parsed.value.problems) expect(problem.problem).toContain('task ids are 1 to 63 letters');
});
