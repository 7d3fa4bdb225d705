/**
 * Container limits: checkPolicy rejects every request beyond the node's policy and names the field,
 * and a container created through ContainerRuntime.startTask on the real engine has no extra
 * privileges, loopback-only ports and the resource limits applied.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Dockerode from 'dockerode';
import pino from 'pino';
import { checkPolicy, type NodePolicy } from '../../src/docker/policy';
import { ContainerPolicyError, ContainerRuntime } from '../../src/docker/runtime';
import { LABEL_NODE } from '../../src/docker/labels';
import type { ContainerSpec } from '../../src/state/schemas';

const IMAGE = 'gitfleet/busybox:local';
const NODE = `sec-policy-${randomBytes(4).toString('hex')}`;
const docker = new Dockerode();
const runtime = new ContainerRuntime({ docker, logger: pino({ level: 'silent' }) });
const allowed = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-allowed-')));
const outside = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-outside-')));
fs.symlinkSync(outside, path.join(allowed, 'escape'));
const policy: NodePolicy = { allowedMounts: [allowed], allowedImages: ['gitfleet/'], maxMemoryMb: 256, maxCpus: 1 };

afterAll(async () => {
  const mine = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${NODE}`] } });
  for (const c of mine) await docker.getContainer(c.Id).remove({ force: true });
  fs.rmSync(allowed, { recursive: true, force: true });
  fs.rmSync(outside, { recursive: true, force: true });
});

const REJECTED: Array<[string, Partial<ContainerSpec>, string]> = [
  ['privileged', { privileged: true }, 'privileged true: privileged containers are not allowed'],
  ['cap_add', { cap_add: ['SYS_ADMIN'] }, 'cap_add ["SYS_ADMIN"]: extra capabilities are not allowed'],
  ['host network', { network_mode: 'host' }, 'network_mode "host": only "bridge" (the default) and "none" are allowed'],
  ['container network', { network_mode: 'container:abc' }, 'network_mode "container:abc"'],
  ['docker socket', { mounts: [{ source: '/var/run/docker.sock', target: '/s' }] }, 'mounts[0].source "/var/run/docker.sock": exposes the Docker engine socket'],
  ['socket folder', { mounts: [{ source: '/run', target: '/r' }] }, 'mounts[0].source "/run": exposes the Docker engine socket'],
  ['mount outside allowlist', { mounts: [{ source: '/etc', target: '/e' }] }, `mounts[0].source "/etc": outside the node's allowed mount paths (${allowed})`],
  ['symlink escape', { mounts: [{ source: path.join(allowed, 'escape'), target: '/x' }] }, `(resolves to ${outside}): outside the node's allowed mount paths`],
  ['dot-dot escape', { mounts: [{ source: `${allowed}/../`, target: '/x' }] }, "outside the node's allowed mount paths"],
  ['relative mount', { mounts: [{ source: 'data', target: '/x' }] }, 'mounts[0].source "data": not an absolute host path'],
  ['image not allowed', { image: 'busybox:latest' }, 'image "busybox:latest": not in the node\'s allowed images (gitfleet/)'],
  ['memory over max', { resources: { memory_mb: 512 } }, "resources.memory_mb 512: above the node's maximum of 256 MB; lower it to 256 or less"],
  ['cpus over max', { resources: { cpus: 2 } }, "resources.cpus 2: above the node's maximum of 1 CPUs; lower it to 1 or less"],
  ['memory under engine minimum', { resources: { memory_mb: 1 } }, "resources.memory_mb 1: below Docker's minimum of 6 MB"],
];

describe('checkPolicy', () => {
  test.each(REJECTED)('rejects %s', (_name, extra, message) => {
    const result = checkPolicy({ image: IMAGE, ...extra }, policy);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.join('\n')).toContain(message);
  });

  test('reports every violation at once', () => {
    const result = checkPolicy({ image: IMAGE, privileged: true, resources: { memory_mb: 999, cpus: 9 } }, policy);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors).toHaveLength(3);
  });

  test('accepts allowed spec with limits', () => {
    const result = checkPolicy(
      { image: IMAGE, network_mode: 'none', mounts: [{ source: allowed, target: '/data', read_only: true }], resources: { memory_mb: 64, cpus: 0.5 } },
      policy,
    );
    expect(result).toEqual({ ok: true, memoryBytes: 64 * 1024 * 1024, nanoCpus: 500_000_000, mounts: [{ source: allowed, target: '/data', readOnly: true }] });
  });

  test('node defaults apply when a task sets none', () => {
    const result = checkPolicy({ image: IMAGE }, { ...policy, defaultMemoryMb: 32, defaultCpus: 0.25 });
    expect(result).toMatchObject({ ok: true, memoryBytes: 32 * 1024 * 1024, nanoCpus: 250_000_000 });
  });
});

describe('container on the real engine', () => {
  test('has no privileges and applied limits', async () => {
    const started = await runtime.startTask({
      nodeId: NODE,
      taskId: 'limits',
      epoch: 1,
      claimToken: 'c1',
      spec: { image: IMAGE, command: ['sleep', '30'], ports: [{ container: 8080 }, { container: 9090, protocol: 'udp' }], resources: { memory_mb: 64, cpus: 0.5 } },
      env: {},
      policy,
    });
    const info = await docker.getContainer(started.containerId).inspect();
    const host = info.HostConfig;
    expect(host.Privileged).toBe(false);
    expect(host.CapAdd ?? []).toEqual([]);
    expect(host.NetworkMode).toBe('bridge');
    expect(host.Memory).toBe(64 * 1024 * 1024);
    expect(host.NanoCpus).toBe(500_000_000);
    expect(host.SecurityOpt).toContain('no-new-privileges');
    expect(host.Binds ?? []).toEqual([]);
    expect(info.Mounts.filter((m) => m.Type === 'bind')).toEqual([]);
    for (const bindings of Object.values(host.PortBindings ?? {}) as Array<Array<{ HostIp: string }>>) {
      for (const binding of bindings) expect(binding.HostIp).toBe('127.0.0.1');
    }
    const published = Object.values(info.NetworkSettings.Ports ?? {}).flatMap((b) => (b as Array<{ HostIp: string }> | null) ?? []);
    expect(published.length).toBeGreaterThan(0);
    for (const binding of published) expect(binding.HostIp).toBe('127.0.0.1');
    await runtime.stopAndRemove(started.containerId, { stopTimeoutS: 1 });
  });

  test('over-limit task is rejected, not trimmed', async () => {
    const error = await runtime
      .startTask({ nodeId: NODE, taskId: 'greedy', epoch: 1, claimToken: 'c2', spec: { image: IMAGE, resources: { memory_mb: 4096 } }, env: {}, policy })
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ContainerPolicyError);
    expect((error as Error).message).toContain("resources.memory_mb 4096: above the node's maximum of 256 MB");
    const created = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${NODE}`, 'io.gitfleet.task=greedy'] } });
    expect(created).toEqual([]);
  });
});
