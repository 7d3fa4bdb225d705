/**
 * Defences found by trying to break a node from the control repo: a mount
 * source below a folder another task can write is refused (that task could
 * swap a folder for a symlink between the check and the mount), node caps
 * limit tasks that ask for nothing, low host ports are refused, and deeply
 * nested JSON is reported instead of overflowing the stack.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Dockerode from 'dockerode';
import pino from 'pino';
import { checkPolicy, type NodePolicy } from '../../src/docker/policy';
import { ContainerRuntime } from '../../src/docker/runtime';
import { MountRaceError } from '../../src/docker/errors';
import { LABEL_NODE } from '../../src/docker/labels';
import { parseSchedule } from '../../src/state/control-files';
import { MAX_NESTING } from '../../src/state/parse';
import { validatePath } from '../../src/commands/validate';

const IMAGE = 'gitfleet/busybox:local';
const NODE = `sec-hard-${randomBytes(4).toString('hex')}`;
const docker = new Dockerode();
const runtime = new ContainerRuntime({ docker, logger: pino({ level: 'silent' }) });
const allowed = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-hard-')));
fs.mkdirSync(path.join(allowed, 'shared', 'sub'), { recursive: true });
const policy: NodePolicy = { allowedMounts: [allowed] };

afterAll(async () => {
  const mine = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${NODE}`] } });
  for (const c of mine) await docker.getContainer(c.Id).remove({ force: true });
  fs.rmSync(allowed, { recursive: true, force: true });
});

function start(taskId: string, mounts: Array<{ source: string; target: string; read_only?: boolean }>) {
  return runtime.startTask({
    nodeId: NODE,
    taskId,
    epoch: 1,
    claimToken: `token-${taskId}`,
    spec: { image: IMAGE, command: ['sleep', '600'], mounts },
    env: {},
    policy,
  });
}

describe('mount below a writable mount', () => {
  test('is refused while the writer runs', async () => {
    const writer = await start('writer', [{ source: path.join(allowed, 'shared'), target: '/w' }]);
    expect(writer.containerId).toBeTruthy();

    const attempt = start('reader', [{ source: path.join(allowed, 'shared', 'sub'), target: '/r', read_only: true }]);
    await expect(attempt).rejects.toBeInstanceOf(MountRaceError);
    await expect(attempt).rejects.toThrow(/inside .*shared, which task writer mounts writable/);
    const readers = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${NODE}`, 'io.gitfleet.task=reader'] } });
    expect(readers).toHaveLength(0);

    // The same folder as the writer's mount is fine: the writer cannot replace its own mount point.
    const sibling = await start('same-folder', [{ source: path.join(allowed, 'shared'), target: '/s', read_only: true }]);
    expect(sibling.containerId).toBeTruthy();

    await runtime.stopAndRemove(writer.containerId, { stopTimeoutS: 1 });
    const later = await start('reader', [{ source: path.join(allowed, 'shared', 'sub'), target: '/r', read_only: true }]);
    expect(later.containerId).toBeTruthy();
  });
});

describe('node caps', () => {
  test('apply to tasks without resources', () => {
    const result = checkPolicy({ image: IMAGE }, { allowedMounts: [], maxMemoryMb: 64, maxCpus: 0.5 });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.memoryBytes).toBe(64 * 1024 * 1024);
    expect(result.nanoCpus).toBe(500_000_000);
  });

  test('low host ports are refused', () => {
    const result = checkPolicy({ image: IMAGE, ports: [{ container: 80, host: 80 }] }, { allowedMounts: [] });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.join('\n')).toContain('ports[0].host 80: host ports below 1024 are reserved');
  });

  test('high and random host ports pass', () => {
    const result = checkPolicy({ image: IMAGE, ports: [{ container: 80, host: 8080 }, { container: 81 }] }, { allowedMounts: [] });
    expect(result.ok).toBe(true);
  });
});

describe('deeply nested JSON', () => {
  test('is a file problem, not a crash', () => {
    const depth = 20_000;
    const text = `{"tasks": [{"id": "deep", "type": "t", "priority": 1, "image": "${IMAGE}", "config": ${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}]}`;
    const parsed = parseSchedule(Buffer.from(text));
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.error.message).toContain(`more than the ${MAX_NESTING} levels`);
    expect(parsed.error.message).toContain('schedule.json');
  });

  test('nesting inside strings does not count', () => {
    const text = JSON.stringify({ tasks: [{ id: 'a', type: 't', priority: 1, image: IMAGE, config: { note: '['.repeat(500) } }] });
    const parsed = parseSchedule(Buffer.from(text));
    expect(parsed.ok).toBe(true);
  });
});

describe('validate by file name', () => {
  test('checks fleet.json as settings', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-validate-name-'));
    try {
      const file = path.join(dir, 'fleet.json');
      fs.writeFileSync(file, JSON.stringify({ settings: { task_expiry_s: 5 } }));
      const problems = validatePath(file);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain('fleet.json at settings: unsafe combination');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
