/**
 * ContainerRuntime against the real local Docker engine and the gitfleet/busybox:local image
 * (built by scripts/setup.sh). Every container carries this run's node id, and afterAll removes
 * them all by label.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import pino from 'pino';
import {
  ContainerNameConflictError,
  ContainerPolicyError,
  ContainerRuntime,
  ContainerStartError,
  DockerTimeoutError,
  DockerUnavailableError,
  ImageBuildError,
  ImageNotFoundError,
  type StartTaskParams,
} from '../../src/docker/runtime';
import {
  containerName,
  LABEL_CLAIM,
  LABEL_EPOCH,
  LABEL_MANAGED,
  LABEL_NODE,
  LABEL_TASK,
} from '../../src/docker/labels';
import type { NodePolicy } from '../../src/docker/policy';
import type { ContainerSpec } from '../../src/state/schemas';

const IMAGE = process.env.GITFLEET_TEST_IMAGE ?? 'gitfleet/busybox:local';
const RUN_ID = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
const NODE = `jest-${RUN_ID}`;
const BUILD_TAG = `gitfleet-test/build-${RUN_ID}:local`;

const docker = new Dockerode();
const logger = pino({ level: process.env.GITFLEET_TEST_LOG_LEVEL ?? 'silent' });
const runtime = new ContainerRuntime({ docker, logger });
const tmpRoot = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-docker-')));
const policy: NodePolicy = { allowedMounts: [tmpRoot] };
const builtImages = new Set<string>();
const servers: net.Server[] = [];
const serverSockets = new Set<net.Socket>();

function sleepSpec(extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return { image: IMAGE, command: ['sleep', '300'], ...extra };
}

function start(taskId: string, spec: ContainerSpec, extra: Partial<StartTaskParams> = {}) {
  return runtime.startTask({
    nodeId: NODE,
    taskId,
    epoch: 1,
    claimToken: `claim-${taskId}`,
    spec,
    env: {},
    policy,
    ...extra,
  });
}

// The engine's init process forwards SIGTERM, so `sleep` ends well within this grace period.
function remove(idOrName: string) {
  return runtime.stopAndRemove(idOrName, { stopTimeoutS: 5 });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) {
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

function listen(server: net.Server, target: string | number): Promise<void> {
  servers.push(server);
  server.on('connection', (socket) => serverSockets.add(socket));
  return new Promise((resolve) => {
    if (typeof target === 'string') {
      server.listen(target, resolve);
    } else {
      server.listen(target, '127.0.0.1', resolve);
    }
  });
}

beforeAll(async () => {
  try {
    await docker.getImage(IMAGE).inspect();
  } catch {
    throw new Error(`Test image ${IMAGE} is missing: run scripts/setup.sh (make setup) first`);
  }
});

afterAll(async () => {
  const leftovers = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL_NODE}=${NODE}`] },
  });
  for (const container of leftovers) {
    await docker.getContainer(container.Id).remove({ force: true });
  }
  for (const image of builtImages) {
    await docker
      .getImage(image)
      .remove({ force: true })
      .catch(() => undefined);
  }
  for (const socket of serverSockets) {
    socket.destroy();
  }
  for (const server of servers) {
    server.close();
  }
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

describe('startTask and stopAndRemove', () => {
  it('starts a labelled, deterministically named container', async () => {
    const spec = sleepSpec({ resources: { memory_mb: 64, cpus: 0.5 } });
    const started = await start('labelled', spec);

    expect(started.adopted).toBe(false);
    expect(started.name).toBe(containerName(NODE, 'labelled', 1));

    const state = await runtime.inspectTask(started.containerId);
    expect(state?.running).toBe(true);
    expect(state?.name).toBe(started.name);
    expect(state?.labels[LABEL_MANAGED]).toBe('true');
    expect(state?.labels[LABEL_NODE]).toBe(NODE);
    expect(state?.labels[LABEL_TASK]).toBe('labelled');
    expect(state?.labels[LABEL_EPOCH]).toBe('1');
    expect(state?.labels[LABEL_CLAIM]).toBe('claim-labelled');

    const raw = await docker.getContainer(started.containerId).inspect();
    expect(raw.HostConfig.Privileged).toBe(false);
    expect(raw.HostConfig.Init).toBe(true);
    expect(raw.HostConfig.SecurityOpt).toEqual(['no-new-privileges']);
    expect(raw.HostConfig.NetworkMode).toBe('bridge');
    expect(raw.HostConfig.Memory).toBe(64 * 1024 * 1024);
    expect(raw.HostConfig.NanoCpus).toBe(500_000_000);
    expect(raw.Config.Cmd).toEqual(['sleep', '300']);

    const listed = await runtime.listManaged({ nodeId: NODE, taskId: 'labelled' });
    expect(listed).toEqual([
      {
        id: started.containerId,
        name: started.name,
        nodeId: NODE,
        taskId: 'labelled',
        epoch: 1,
        claimToken: 'claim-labelled',
        running: true,
        state: 'running',
      },
    ]);

    const stopped = await remove(started.containerId);
    expect(stopped.removed).toBe(true);
    // 143 is 128 + SIGTERM, so the stop ended the task before the engine's SIGKILL.
    expect(stopped.exitCode).toBe(143);
    expect(await runtime.inspectTask(started.containerId)).toBeNull();
  });

  it('stops and removes idempotently', async () => {
    const started = await start('idempotent', sleepSpec());

    const first = await remove(started.name);
    const second = await remove(started.name);

    expect(first.removed).toBe(true);
    expect(second).toEqual({ removed: false, exitCode: null, lastLogs: [] });
  });

  it('removes an already stopped container', async () => {
    const started = await start('stopped', { image: IMAGE, command: ['sh', '-c', 'echo bye'] });
    await runtime.waitExit(started.containerId, 10_000);

    // The stop gets 304 from the engine because the container has exited already.
    const result = await remove(started.containerId);

    expect(result.removed).toBe(true);
    expect(result.exitCode).toBe(0);
    expect(result.lastLogs).toEqual(['bye']);
  });

  it('adopts its own container on a second start', async () => {
    const first = await start('adopt', sleepSpec());
    const second = await start('adopt', sleepSpec());

    expect(second.adopted).toBe(true);
    expect(second.containerId).toBe(first.containerId);
    expect(await runtime.listManaged({ nodeId: NODE, taskId: 'adopt' })).toHaveLength(1);

    await docker.getContainer(first.containerId).kill();
    const third = await start('adopt', sleepSpec());

    expect(third.adopted).toBe(true);
    expect((await runtime.inspectTask(first.containerId))?.running).toBe(true);
    await remove(first.containerId);
  });

  it('rejects a name held by another epoch', async () => {
    const name = containerName(NODE, 'conflict', 1);
    await docker.createContainer({
      name,
      Image: IMAGE,
      Cmd: ['sleep', '300'],
      Labels: {
        [LABEL_MANAGED]: 'true',
        [LABEL_NODE]: NODE,
        [LABEL_TASK]: 'conflict',
        [LABEL_EPOCH]: '9',
      },
    });

    await expect(start('conflict', sleepSpec())).rejects.toBeInstanceOf(ContainerNameConflictError);
    await expect(start('conflict', sleepSpec())).rejects.toThrow(/epoch 9/);
    expect((await runtime.inspectTask(name))?.running).toBe(false);
    await remove(name);
  });

  it('removes a container whose start fails', async () => {
    // The engine binds published ports at start, so a host port in use fails the start.
    const blocker = net.createServer();
    await listen(blocker, 0);
    const port = (blocker.address() as net.AddressInfo).port;
    const spec = sleepSpec({ ports: [{ container: 8080, host: port }] });

    const failure = start('port-taken', spec);

    await expect(failure).rejects.toBeInstanceOf(ContainerStartError);
    await expect(failure).rejects.toThrow(String(port));
    expect(await runtime.listManaged({ nodeId: NODE, taskId: 'port-taken' })).toEqual([]);
  });

  it('reports a missing command as exit 127', async () => {
    // The init process starts first and fails to exec the command, so the start itself succeeds.
    const started = await start('bad-command', { image: IMAGE, command: ['/no/such/binary'] });

    expect(await runtime.waitExit(started.containerId, 10_000)).toEqual({
      exited: true,
      exitCode: 127,
    });
    await remove(started.containerId);
  });

  it('rejects a policy violation before create', async () => {
    const spec = sleepSpec({ privileged: true });

    await expect(start('privileged', spec)).rejects.toBeInstanceOf(ContainerPolicyError);
    expect(await runtime.listManaged({ nodeId: NODE, taskId: 'privileged' })).toEqual([]);
  });

  it('rejects a missing image with ImageNotFoundError', async () => {
    const spec = sleepSpec({ image: `gitfleet-test/absent-${RUN_ID}:none` });

    await expect(start('no-image', spec)).rejects.toBeInstanceOf(ImageNotFoundError);
  });

  it('binds allowed mounts read-only', async () => {
    const dataDir = path.join(tmpRoot, 'data');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'file.txt'), `hello ${RUN_ID}\n`);
    const spec: ContainerSpec = {
      image: IMAGE,
      command: ['sh', '-c', 'cat /data/file.txt; touch /data/new 2>/dev/null || echo read-only'],
      mounts: [{ source: dataDir, target: '/data', read_only: true }],
    };

    const started = await start('mount', spec);
    await runtime.waitExit(started.containerId, 10_000);

    expect(await runtime.tailLogs(started.containerId, 10)).toEqual([
      `hello ${RUN_ID}`,
      'read-only',
    ]);
    await remove(started.containerId);
  });
});

describe('waitExit', () => {
  it('returns exited false within the timeout', async () => {
    const started = await start('long', sleepSpec());
    const pipesBefore = process.getActiveResourcesInfo().filter((r) => r === 'PipeWrap').length;

    const begin = Date.now();
    const result = await runtime.waitExit(started.containerId, 1000);
    const elapsed = Date.now() - begin;
    await new Promise((resolve) => setTimeout(resolve, 200));
    const pipesAfter = process.getActiveResourcesInfo().filter((r) => r === 'PipeWrap').length;

    expect(result).toEqual({ exited: false });
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(2000);
    expect(pipesAfter).toBeLessThanOrEqual(pipesBefore);
    await remove(started.containerId);
  });

  it('records a batch exit code', async () => {
    const spec: ContainerSpec = {
      image: IMAGE,
      command: ['sh', '-c', 'exit 3'],
      kind: 'batch',
      network_mode: 'none',
    };
    const started = await start('batch', spec);

    const result = await runtime.waitExit(started.containerId, 10_000);
    const state = await runtime.inspectTask(started.containerId);

    expect(result).toEqual({ exited: true, exitCode: 3 });
    expect(state?.running).toBe(false);
    expect(state?.exitCode).toBe(3);
    expect(state?.finishedAt).not.toBeNull();
    expect((await remove(started.containerId)).exitCode).toBe(3);
  });

  it('treats a removed container as exited', async () => {
    expect(await runtime.waitExit(`gitfleet-absent-${RUN_ID}`, 1000)).toEqual({
      exited: true,
      exitCode: null,
    });
  });
});

describe('tailLogs', () => {
  it('returns the last lines of stdout and stderr', async () => {
    // stdout and stderr reach the log through separate pipes, so only a pause orders them.
    const script =
      'echo oops >&2; sleep 0.3; i=1; while [ $i -le 100 ]; do echo line $i; i=$((i+1)); done';
    const started = await start('logs', { image: IMAGE, command: ['sh', '-c', script] });
    await runtime.waitExit(started.containerId, 10_000);

    const lines = await runtime.tailLogs(started.containerId, 5);

    const all = await runtime.tailLogs(started.containerId, 1000);

    expect(lines).toEqual(['line 96', 'line 97', 'line 98', 'line 99', 'line 100']);
    expect(all).toHaveLength(101);
    expect(all[0]).toBe('oops');
    expect((await remove(started.containerId)).lastLogs).toHaveLength(50);
  });

  it('returns no lines for a missing container', async () => {
    expect(await runtime.tailLogs(`gitfleet-absent-${RUN_ID}`, 5)).toEqual([]);
  });
});

describe('environment', () => {
  it('passes values to the container unchanged', async () => {
    const values: Record<string, string> = {
      QUOTES: `it's "quoted" \\ back`,
      SEMICOLON: 'a; echo injected && b | c',
      SUBSHELL: '$(echo pwned) `id` ${HOME}',
      NEWLINES: 'line1\nline2\n\nline4',
      SPACES: '  padded  ',
      UNICODE: 'grüße ✓',
      EMPTY: '',
    };
    const names = Object.keys(values);
    const script = names.map((name) => `printf '%s\\n--end--\\n' "$${name}"`).join('; ');
    const spec: ContainerSpec = {
      image: IMAGE,
      command: ['sh', '-c', script],
      env: { FROM_SPEC: 'spec', SEMICOLON: 'overridden by the caller' },
    };

    const started = await start('env', spec, { env: values });
    await runtime.waitExit(started.containerId, 10_000);
    const output = (await runtime.tailLogs(started.containerId, 1000)).join('\n') + '\n';
    const printed = output.split('\n--end--\n').slice(0, names.length);

    expect(printed).toEqual(names.map((name) => values[name]));
    await remove(started.containerId);
  });
});

describe('checkHttpHealth', () => {
  it('reports a busybox httpd published on 127.0.0.1', async () => {
    const script = 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www';
    const spec: ContainerSpec = {
      image: IMAGE,
      command: ['sh', '-c', script],
      health_check: {
        type: 'http',
        port: 8080,
        path: '/',
        interval_s: 1,
        timeout_s: 1,
        retries: 1,
        start_period_s: 0,
      },
    };

    const started = await start('http', spec);
    const hostPort = started.hostPorts[8080];
    const raw = await docker.getContainer(started.containerId).inspect();

    expect(hostPort).toBeGreaterThan(0);
    expect(raw.HostConfig.PortBindings).toEqual({
      '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }],
    });
    expect(await waitFor(() => runtime.checkHttpHealth(hostPort, '/', 1000), 10_000)).toBe(true);
    expect(await runtime.checkHttpHealth(hostPort, '/missing', 1000)).toBe(false);

    await remove(started.containerId);
    expect(await runtime.checkHttpHealth(hostPort, '/', 1000)).toBe(false);
  });
});

describe('ensureImage', () => {
  it('returns a local image as is', async () => {
    expect(await runtime.ensureImage({ image: IMAGE })).toBe(IMAGE);
  });

  it('throws ImageNotFoundError quickly when the pull fails', async () => {
    // A registry on loopback that hangs up at once, so the pull fails without leaving the machine.
    const registry = net.createServer((socket) => socket.destroy());
    await listen(registry, 0);
    const port = (registry.address() as net.AddressInfo).port;
    const image = `127.0.0.1:${port}/gitfleet-test/missing:none`;

    const begin = Date.now();
    const failure = runtime.ensureImage({ image });

    await expect(failure).rejects.toBeInstanceOf(ImageNotFoundError);
    await expect(failure).rejects.toThrow(image);
    await expect(failure).rejects.toThrow(/build it/);
    expect(Date.now() - begin).toBeLessThan(10_000);
  });

  it('gives up a hung pull after its time limit', async () => {
    const registry = net.createServer(() => undefined);
    await listen(registry, 0);
    const port = (registry.address() as net.AddressInfo).port;
    const impatient = new ContainerRuntime({ docker, logger, pullTimeoutMs: 1500 });

    const begin = Date.now();
    const failure = impatient.ensureImage({ image: `127.0.0.1:${port}/gitfleet-test/hung:none` });

    await expect(failure).rejects.toThrow(/timed out after 1500 ms/);
    expect(Date.now() - begin).toBeLessThan(3000);
  });

  it('builds a context directory and reuses the result', async () => {
    const contextDir = path.join(tmpRoot, 'contexts', 'hello');
    fs.mkdirSync(contextDir, { recursive: true });
    fs.writeFileSync(path.join(contextDir, 'hello.txt'), `built ${RUN_ID}\n`);
    fs.writeFileSync(
      path.join(contextDir, 'Dockerfile'),
      `FROM ${IMAGE}\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n`,
    );
    const spec: ContainerSpec = { build: { context: 'contexts/hello' } };

    const image = await runtime.ensureImage(spec, { contextRoot: tmpRoot });
    builtImages.add(image);
    const begin = Date.now();
    const again = await runtime.ensureImage(spec, { contextRoot: tmpRoot });

    expect(image).toMatch(/^gitfleet-build\/[0-9a-f]{16}:local$/);
    expect(again).toBe(image);
    expect(Date.now() - begin).toBeLessThan(2000);

    const started = await start('built', { build: spec.build }, { image });
    await runtime.waitExit(started.containerId, 10_000);
    expect(await runtime.tailLogs(started.containerId, 5)).toEqual([`built ${RUN_ID}`]);
    await remove(started.containerId);
  });

  it('tags a build with the spec image', async () => {
    const contextDir = path.join(tmpRoot, 'contexts', 'named');
    fs.mkdirSync(contextDir, { recursive: true });
    fs.writeFileSync(path.join(contextDir, 'build.Dockerfile'), `FROM ${IMAGE}\nCMD ["true"]\n`);
    const spec: ContainerSpec = {
      image: BUILD_TAG,
      build: { context: 'contexts/named', dockerfile: 'build.Dockerfile' },
    };
    builtImages.add(BUILD_TAG);

    expect(await runtime.ensureImage(spec, { contextRoot: tmpRoot })).toBe(BUILD_TAG);
    expect((await docker.getImage(BUILD_TAG).inspect()).Config.Labels).toMatchObject({
      [LABEL_MANAGED]: 'true',
    });
  });

  it('reports a failing build', async () => {
    const contextDir = path.join(tmpRoot, 'contexts', 'broken');
    fs.mkdirSync(contextDir, { recursive: true });
    fs.writeFileSync(path.join(contextDir, 'Dockerfile'), `FROM ${IMAGE}\nRUN ["false"]\n`);

    const failure = runtime.ensureImage(
      { build: { context: 'contexts/broken' } },
      { contextRoot: tmpRoot },
    );

    await expect(failure).rejects.toBeInstanceOf(ImageBuildError);
    await expect(failure).rejects.toThrow(/non-zero code/);
  });

  it('rejects a build context outside the context root', async () => {
    const failure = runtime.ensureImage(
      { build: { context: '../..' } },
      { contextRoot: path.join(tmpRoot, 'contexts') },
    );

    await expect(failure).rejects.toBeInstanceOf(ImageBuildError);
    await expect(failure).rejects.toThrow(/outside/);
  });
});

describe('engine failures', () => {
  it('times out a call to an engine that never answers', async () => {
    const socketPath = path.join(tmpRoot, 'hung.sock');
    const closed: Promise<void>[] = [];
    const hung = net.createServer((socket) => {
      closed.push(new Promise((resolve) => socket.on('close', () => resolve())));
      // Reading (and discarding) the request lets the server notice when the client hangs up.
      socket.resume();
    });
    await listen(hung, socketPath);
    const stalled = new ContainerRuntime({
      docker: new Dockerode({ socketPath }),
      logger,
      callTimeoutMs: 300,
    });

    const begin = Date.now();
    await expect(stalled.inspectTask('anything')).rejects.toBeInstanceOf(DockerTimeoutError);
    expect(Date.now() - begin).toBeLessThan(1000);

    // The aborted request closes its connection instead of leaving it open.
    expect(closed).toHaveLength(1);
    await expect(Promise.all(closed)).resolves.toBeDefined();
  });

  it('reports a missing engine socket as unavailable', async () => {
    const missing = new ContainerRuntime({
      docker: new Dockerode({ socketPath: path.join(tmpRoot, 'no-such.sock') }),
      logger,
    });

    await expect(missing.listManaged()).rejects.toBeInstanceOf(DockerUnavailableError);
  });
});
