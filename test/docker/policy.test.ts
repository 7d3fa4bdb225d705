import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { imageMatchesPattern, parseImageReference } from '../../src/docker/image-ref';
import { checkPolicy, type NodePolicy } from '../../src/docker/policy';
import type { ContainerSpec } from '../../src/state/schemas';

const IMAGE = 'gitfleet/busybox:local';
// Created at load time because the case tables below name these paths.
const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-policy-')));
const allowedDir = path.join(root, 'allowed');
const policy: NodePolicy = { allowedMounts: [allowedDir], maxMemoryMb: 512, maxCpus: 1 };

beforeAll(() => {
  fs.mkdirSync(path.join(allowedDir, 'data'), { recursive: true });
  fs.mkdirSync(path.join(root, 'outside'));
  fs.symlinkSync('/etc', path.join(allowedDir, 'etc-link'));
  fs.symlinkSync(path.join(allowedDir, 'data'), path.join(root, 'outside', 'link-in'));
});

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function errorsOf(spec: ContainerSpec, nodePolicy: NodePolicy = policy): string[] {
  const result = checkPolicy(spec, nodePolicy);
  return result.ok ? [] : result.errors;
}

describe('checkPolicy rejections', () => {
  const cases: Array<{ title: string; spec: () => ContainerSpec; field: string; fix: string }> = [
    {
      title: 'privileged',
      spec: () => ({ image: IMAGE, privileged: true }),
      field: 'privileged true',
      fix: 'remove "privileged"',
    },
    {
      title: 'host network',
      spec: () => ({ image: IMAGE, network_mode: 'host' }),
      field: 'network_mode "host"',
      fix: 'use "bridge" or "none"',
    },
    {
      title: 'container network',
      spec: () => ({ image: IMAGE, network_mode: 'container:abc' }),
      field: 'network_mode "container:abc"',
      fix: 'use "bridge" or "none"',
    },
    {
      title: 'custom network',
      spec: () => ({ image: IMAGE, network_mode: 'my-net' }),
      field: 'network_mode "my-net"',
      fix: 'use "bridge" or "none"',
    },
    {
      title: 'cap_add',
      spec: () => ({ image: IMAGE, cap_add: ['NET_ADMIN'] }),
      field: 'cap_add ["NET_ADMIN"]',
      fix: 'remove "cap_add"',
    },
    {
      title: 'mount outside allowed paths',
      spec: () => ({ image: IMAGE, mounts: [{ source: '/etc', target: '/x' }] }),
      field: 'mounts[0].source "/etc"',
      fix: '--allow-mount',
    },
    {
      title: 'mount escaping with ..',
      spec: () => ({
        image: IMAGE,
        mounts: [{ source: `${allowedDir}/../outside`, target: '/x' }],
      }),
      field: `mounts[0].source "${allowedDir}/../outside"`,
      fix: '--allow-mount',
    },
    {
      title: 'mount through a symlink',
      spec: () => ({
        image: IMAGE,
        mounts: [{ source: path.join(allowedDir, 'etc-link'), target: '/x' }],
      }),
      field: `mounts[0].source "${path.join(allowedDir, 'etc-link')}" (resolves to /etc)`,
      fix: '--allow-mount',
    },
    {
      title: 'relative mount',
      spec: () => ({ image: IMAGE, mounts: [{ source: 'data', target: '/x' }] }),
      field: 'mounts[0].source "data"',
      fix: 'absolute path',
    },
    {
      title: 'docker socket',
      spec: () => ({
        image: IMAGE,
        mounts: [{ source: '/var/run/docker.sock', target: '/var/run/docker.sock' }],
      }),
      field: 'mounts[0].source "/var/run/docker.sock"',
      fix: 'remove the mount',
    },
    {
      title: 'uppercase image',
      spec: () => ({ image: 'Gitfleet/Busybox:local' }),
      field: 'image "Gitfleet/Busybox:local"',
      fix: 'fix the reference',
    },
    {
      title: 'image tag too long',
      spec: () => ({ image: `busybox:${'a'.repeat(129)}` }),
      field: 'image "busybox:',
      fix: 'fix the reference',
    },
    {
      title: 'short digest',
      spec: () => ({ image: 'busybox@sha256:abc' }),
      field: 'image "busybox@sha256:abc"',
      fix: 'fix the reference',
    },
    {
      title: 'no image and no build',
      spec: () => ({ command: ['true'] }),
      field: 'image: missing',
      fix: 'set "image" or "build"',
    },
    {
      title: 'memory above maximum',
      spec: () => ({ image: IMAGE, resources: { memory_mb: 1024 } }),
      field: 'resources.memory_mb 1024',
      fix: 'lower it to 512',
    },
    {
      title: 'cpus above maximum',
      spec: () => ({ image: IMAGE, resources: { cpus: 2 } }),
      field: 'resources.cpus 2',
      fix: 'lower it to 1',
    },
    {
      title: 'memory below engine minimum',
      spec: () => ({ image: IMAGE, resources: { memory_mb: 1 } }),
      field: 'resources.memory_mb 1',
      fix: 'set at least 6',
    },
    {
      title: 'ports without network',
      spec: () => ({ image: IMAGE, network_mode: 'none', ports: [{ container: 80 }] }),
      field: 'ports:',
      fix: 'remove "ports"',
    },
  ];

  it.each(cases)('rejects $title', ({ spec, field, fix }) => {
    const errors = errorsOf(spec());

    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(field);
    expect(errors[0]).toContain(fix);
  });

  it('rejects the docker socket even under an allowed prefix', () => {
    const errors = errorsOf(
      { image: IMAGE, mounts: [{ source: '/run/docker.sock', target: '/s' }] },
      { allowedMounts: ['/run', '/var/run'] },
    );

    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('Docker engine socket');
  });

  it('rejects a directory that contains the docker socket', () => {
    const errors = errorsOf(
      { image: IMAGE, mounts: [{ source: '/', target: '/host' }] },
      { allowedMounts: ['/'] },
    );

    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('Docker engine socket');
  });

  it('names the allowed mount paths in the message', () => {
    const errors = errorsOf({ image: IMAGE, mounts: [{ source: '/etc', target: '/x' }] });

    expect(errors[0]).toBe(
      `mounts[0].source "/etc": outside the node's allowed mount paths (${allowedDir}); ` +
        'ask the node operator to add it with --allow-mount or remove the mount',
    );
  });

  it('rejects every mount with default policy', () => {
    const errors = errorsOf(
      { image: IMAGE, mounts: [{ source: allowedDir, target: '/x' }] },
      { allowedMounts: [] },
    );

    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('(none)');
  });

  it('reports every violation at once', () => {
    const errors = errorsOf({
      image: IMAGE,
      privileged: true,
      network_mode: 'host',
      cap_add: ['SYS_ADMIN'],
      mounts: [{ source: '/etc', target: '/x' }],
    });

    expect(errors).toHaveLength(4);
  });

  it('rejects images outside allowedImages', () => {
    const errors = errorsOf(
      { image: 'evil/miner:latest' },
      { ...policy, allowedImages: ['gitfleet/'] },
    );

    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('image "evil/miner:latest"');
    expect(errors[0]).toContain('gitfleet/');
  });

  it('rejects a default above the node maximum', () => {
    const errors = errorsOf({ image: IMAGE }, { ...policy, defaultMemoryMb: 1024 });

    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('node default memory 1024');
  });
});

describe('checkPolicy acceptance', () => {
  it('accepts a plain spec with no limits', () => {
    const result = checkPolicy({ image: IMAGE }, { allowedMounts: [] });

    expect(result).toEqual({ ok: true, memoryBytes: undefined, nanoCpus: undefined, mounts: [] });
  });

  it('converts resources to engine units', () => {
    const result = checkPolicy({ image: IMAGE, resources: { memory_mb: 64, cpus: 0.5 } }, policy);

    expect(result.ok && result.memoryBytes).toBe(64 * 1024 * 1024);
    expect(result.ok && result.nanoCpus).toBe(500_000_000);
  });

  it('applies node defaults', () => {
    const result = checkPolicy(
      { image: IMAGE },
      { ...policy, defaultMemoryMb: 128, defaultCpus: 1 },
    );

    expect(result.ok && result.memoryBytes).toBe(128 * 1024 * 1024);
    expect(result.ok && result.nanoCpus).toBe(1_000_000_000);
  });

  it('accepts bridge and none networks', () => {
    expect(checkPolicy({ image: IMAGE, network_mode: 'bridge' }, policy).ok).toBe(true);
    expect(checkPolicy({ image: IMAGE, network_mode: 'none' }, policy).ok).toBe(true);
  });

  it('accepts privileged false and empty cap_add', () => {
    expect(checkPolicy({ image: IMAGE, privileged: false, cap_add: [] }, policy).ok).toBe(true);
  });

  it('resolves allowed mounts through symlinks', () => {
    const source = path.join(root, 'outside', 'link-in');
    const result = checkPolicy(
      { image: IMAGE, mounts: [{ source, target: '/data', read_only: true }] },
      policy,
    );

    // The node's maximums also limit a task that sets no resources.
    expect(result).toEqual({
      ok: true,
      memoryBytes: (policy.maxMemoryMb ?? 0) * 1024 * 1024,
      nanoCpus: (policy.maxCpus ?? 0) * 1e9,
      mounts: [{ source: path.join(allowedDir, 'data'), target: '/data', readOnly: true }],
    });
  });

  it('accepts a missing path under an allowed prefix', () => {
    const source = path.join(allowedDir, 'not-yet', 'created');
    const result = checkPolicy({ image: IMAGE, mounts: [{ source, target: '/x' }] }, policy);

    expect(result.ok).toBe(true);
  });

  it('accepts built images when the build prefix is allowed', () => {
    const spec: ContainerSpec = { build: { context: 'ctx' } };

    expect(checkPolicy(spec, { ...policy, allowedImages: ['gitfleet-build/'] }).ok).toBe(true);
    expect(checkPolicy(spec, { ...policy, allowedImages: ['gitfleet/'] }).ok).toBe(false);
  });
});

describe('parseImageReference', () => {
  const valid = [
    'busybox',
    'gitfleet/busybox:local',
    'docker.io/library/busybox:1.36',
    'localhost:5000/team/app',
    '127.0.0.1:5000/app:v1.2.3',
    'registry.example.com/a/b/c',
    'my_app__x.y-z',
    `busybox@sha256:${'a'.repeat(64)}`,
    `busybox:1.36@sha256:${'0'.repeat(64)}`,
    `busybox:${'t'.repeat(128)}`,
  ];
  it.each(valid)('accepts %s', (reference) => {
    expect(parseImageReference(reference).ok).toBe(true);
  });

  const invalid = [
    '',
    'Busybox',
    'busybox:',
    'busybox:-tag',
    `busybox:${'t'.repeat(129)}`,
    'busybox@sha256:ABC',
    `busybox@md5:${'a'.repeat(32)}`,
    '-busybox',
    'a//b',
    'busybox/',
    'host:port/app',
    'bad_host.com/app',
    'busy box',
    'app:tag:more',
  ];
  it.each(invalid)('rejects "%s"', (reference) => {
    expect(parseImageReference(reference).ok).toBe(false);
  });

  it('splits registry, path and tag', () => {
    expect(parseImageReference('localhost:5000/team/app:v1')).toEqual({
      ok: true,
      name: 'localhost:5000/team/app',
      reference: { registry: 'localhost:5000', path: 'team/app', tag: 'v1', digest: undefined },
    });
  });
});

describe('imageMatchesPattern', () => {
  const cases: Array<[string, string, boolean]> = [
    ['gitfleet/busybox:local', 'gitfleet/busybox:local', true],
    ['gitfleet/busybox:other', 'gitfleet/busybox:local', false],
    ['gitfleet/busybox:local', 'gitfleet/busybox', true],
    ['gitfleet/busybox-extra:local', 'gitfleet/busybox', false],
    ['gitfleet/busybox:local', 'gitfleet/', true],
    ['gitfleetx/busybox:local', 'gitfleet/', false],
    ['registry.local/team/app:1', 'registry.local/*', true],
    ['busybox', 'docker.io/library/busybox', false],
  ];
  it.each(cases)('%s against %s is %s', (image, pattern, expected) => {
    expect(imageMatchesPattern(image, pattern)).toBe(expected);
  });
});
