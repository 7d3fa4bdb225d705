import fs from 'node:fs';
import http from 'node:http';
import Dockerode from 'dockerode';
import type { Logger } from 'pino';
import type { ContainerSpec } from '../state/schemas';
import { hashBuildContext, resolveBuildContext } from './build-context';
import { createOptions, hostPortsFromInspect, PUBLISH_HOST_IP } from './container-config';
import { callEngine, engineMessageOf, readJsonMessages, statusCodeOf } from './engine-call';
import {
  ContainerNameConflictError,
  ContainerPolicyError,
  ContainerStartError,
  DockerTimeoutError,
  DockerUnavailableError,
  ImageBuildError,
  ImageNotFoundError,
  MountRaceError,
} from './errors';
import { parseImageReference } from './image-ref';
import {
  containerName,
  LABEL_CLAIM,
  LABEL_EPOCH,
  LABEL_MANAGED,
  LABEL_NODE,
  LABEL_TASK,
  MANAGED_VALUE,
  taskLabels,
} from './labels';
import { demultiplexLogs, splitLogLines } from './log-stream';
import { BUILT_IMAGE_PREFIX, checkPolicy, isSameOrInside, type NodePolicy, type ResolvedMount } from './policy';

export {
  ContainerNameConflictError,
  ContainerPolicyError,
  ContainerStartError,
  DockerTimeoutError,
  DockerUnavailableError,
  ImageBuildError,
  ImageNotFoundError,
};

export interface ContainerRuntimeOptions {
  /** Engine client; defaults to `new Dockerode()`, which reads DOCKER_HOST or the local socket. */
  docker?: Dockerode;
  /** Time limit of one engine call, in ms (default 15000). */
  callTimeoutMs?: number;
  /** Time limit of an image pull, in ms (default 120000). */
  pullTimeoutMs?: number;
  /** Time limit of an image build, in ms (default 600000). */
  buildTimeoutMs?: number;
  logger: Logger;
}

export interface StartTaskParams {
  nodeId: string;
  taskId: string;
  epoch: number;
  claimToken: string;
  spec: ContainerSpec;
  /** Extra environment (resolved secrets, task config), which overrides `spec.env`. */
  env: Record<string, string>;
  policy: NodePolicy;
  /** Image to run, as returned by `ensureImage`. Defaults to `spec.image`. */
  image?: string;
}

export interface StartedTask {
  containerId: string;
  name: string;
  /** True when a container of the same node, task and epoch already existed and was reused. */
  adopted: boolean;
  /** Published host port per container port, all bound on 127.0.0.1. */
  hostPorts: Record<number, number>;
}

export interface StopResult {
  /** False when the container was already gone before this call. */
  removed: boolean;
  exitCode: number | null;
  /** Last output lines (stdout and stderr), read before removal. */
  lastLogs: string[];
}

export type ContainerHealth = 'starting' | 'healthy' | 'unhealthy';

export interface TaskContainerState {
  id: string;
  name: string;
  running: boolean;
  /** Engine state: created, running, paused, restarting, removing, exited or dead. */
  state: string;
  /** Exit code of the last run, or null while running and before the first run. */
  exitCode: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  /** Status of the image's own HEALTHCHECK, or undefined when the image has none. */
  health?: ContainerHealth;
  restartCount: number;
  labels: Record<string, string>;
}

export interface ManagedContainer {
  id: string;
  name: string;
  nodeId: string;
  taskId: string;
  /** Claim epoch from the label, or NaN if the label is not a number. */
  epoch: number;
  claimToken: string;
  running: boolean;
  state: string;
}

export type WaitResult = { exited: true; exitCode: number | null } | { exited: false };

const DEFAULT_CALL_TIMEOUT_MS = 15_000;
const DEFAULT_PULL_TIMEOUT_MS = 120_000;
const DEFAULT_BUILD_TIMEOUT_MS = 600_000;
const DEFAULT_STOP_TIMEOUT_S = 10;
const STOP_LOG_LINES = 50;
// The engine reports a never-set time as Go's zero time.
const ZERO_TIME_PREFIX = '0001-01-01';

/** Runs task containers on one Docker engine, with a time limit on every engine call. */
export class ContainerRuntime {
  private readonly docker: Dockerode;
  private readonly callTimeoutMs: number;
  private readonly pullTimeoutMs: number;
  private readonly buildTimeoutMs: number;
  private readonly logger: Logger;

  constructor(options: ContainerRuntimeOptions) {
    this.docker = options.docker ?? new Dockerode();
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.pullTimeoutMs = options.pullTimeoutMs ?? DEFAULT_PULL_TIMEOUT_MS;
    this.buildTimeoutMs = options.buildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
    this.logger = options.logger;
  }

  /**
   * Makes the spec's image available locally and returns the reference to run: an existing local
   * image, else a build of `spec.build.context` (relative to `contextRoot`, default the working
   * directory), else a pull.
   */
  async ensureImage(spec: ContainerSpec, opts: { contextRoot?: string } = {}): Promise<string> {
    if (spec.image !== undefined) {
      const parsed = parseImageReference(spec.image);
      if (!parsed.ok) {
        throw new ImageNotFoundError(spec.image, `invalid image reference: ${parsed.reason}`);
      }
      if (await this.imageExists(spec.image)) {
        return spec.image;
      }
    }

    if (spec.build !== undefined) {
      return this.buildFromContext(spec, opts.contextRoot ?? process.cwd());
    }
    if (spec.image === undefined) {
      throw new ImageNotFoundError('(none)', 'the task spec sets neither "image" nor "build"');
    }

    await this.pullImage(spec.image);
    return spec.image;
  }

  /**
   * Creates and starts a task container, or adopts the one this node already created for the same
   * task and epoch. A container that fails to start is removed before the error is rethrown.
   */
  async startTask(p: StartTaskParams): Promise<StartedTask> {
    const policy = checkPolicy(p.spec, p.policy);
    if (!policy.ok) {
      throw new ContainerPolicyError(p.taskId, policy.errors);
    }
    const image = p.image ?? p.spec.image;
    if (image === undefined) {
      throw new Error(
        `Cannot start task ${p.taskId}: the spec has no image; call ensureImage and pass its ` +
          'result as "image"',
      );
    }

    await this.checkMountWriters(p.taskId, policy.mounts);

    const name = containerName(p.nodeId, p.taskId, p.epoch);
    const labels = taskLabels(p.nodeId, p.taskId, p.epoch, p.claimToken);
    const body = createOptions({
      image,
      labels,
      spec: p.spec,
      env: p.env,
      memoryBytes: policy.memoryBytes,
      nanoCpus: policy.nanoCpus,
      mounts: policy.mounts,
    });
    const log = this.logger.child({ nodeId: p.nodeId, taskId: p.taskId, epoch: p.epoch, name });

    const created = await this.createOrAdopt(name, image, body, p);
    const containerId = created.id;
    if (created.adopted) {
      log.info({ containerId, running: created.running }, 'adopting existing container');
    } else {
      log.info({ containerId, image }, 'container created');
    }

    if (!created.running) {
      await this.startOrRemove(containerId, name, log);
    }

    const info = await this.inspectRaw(containerId);
    const hostPorts = hostPortsFromInspect(info?.NetworkSettings?.Ports);
    log.info({ containerId, hostPorts, adopted: created.adopted }, 'container started');
    return { containerId, name, adopted: created.adopted, hostPorts };
  }

  /**
   * Stops and removes a container and returns its exit code and last log lines. Calling it again,
   * or on a container that is already stopped or gone, succeeds.
   */
  async stopAndRemove(idOrName: string, opts: { stopTimeoutS?: number } = {}): Promise<StopResult> {
    const stopTimeoutS = opts.stopTimeoutS ?? DEFAULT_STOP_TIMEOUT_S;
    const before = await this.inspectRaw(idOrName);
    if (before === null) {
      return { removed: false, exitCode: null, lastLogs: [] };
    }
    // From here on the id is used, so a new container that reuses the name is never touched.
    const containerId = before.Id;
    const container = this.docker.getContainer(containerId);

    // The engine waits up to t seconds before SIGKILL, so the call may take that long.
    const stopLimitMs = stopTimeoutS * 1000 + this.callTimeoutMs;
    try {
      await callEngine('stop', containerId, stopLimitMs, (signal) =>
        container.stop({ t: stopTimeoutS, abortSignal: signal }),
      );
    } catch (error) {
      // 304 means already stopped and 404 already gone. A hung stop is followed by a forced remove.
      const status = statusCodeOf(error);
      if (error instanceof DockerTimeoutError) {
        this.logger.warn({ containerId, err: error }, 'container stop timed out');
      } else if (status !== 304 && status !== 404) {
        throw error;
      }
    }

    const after = await this.inspectRaw(containerId);
    const exitCode = after === null ? null : exitCodeOf(after.State);
    const lastLogs = after === null ? [] : await this.tailLogs(containerId, STOP_LOG_LINES);

    try {
      await callEngine('remove', containerId, this.callTimeoutMs, (signal) =>
        container.remove({ force: true, v: true, abortSignal: signal }),
      );
    } catch (error) {
      // 404 means already gone, and 409 that another removal of it is in progress.
      const status = statusCodeOf(error);
      if (status !== 404 && status !== 409) {
        throw error;
      }
    }

    this.logger.info({ containerId, exitCode }, 'container removed');
    return { removed: true, exitCode, lastLogs };
  }

  /** Returns a container's state, or null when it does not exist. */
  async inspectTask(idOrName: string): Promise<TaskContainerState | null> {
    const info = await this.inspectRaw(idOrName);
    if (info === null) {
      return null;
    }

    const state = info.State;
    const healthStatus = (state as { Health?: { Status?: string } }).Health?.Status;
    const health = isContainerHealth(healthStatus) ? healthStatus : undefined;
    return {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      running: state.Running,
      state: state.Status,
      exitCode: exitCodeOf(state),
      startedAt: engineTime(state.StartedAt),
      finishedAt: engineTime(state.FinishedAt),
      health,
      restartCount: info.RestartCount,
      labels: info.Config.Labels ?? {},
    };
  }

  /** Lists the containers gitfleet manages on this engine, stopped ones included. */
  /**
   * Refuse mounts below a folder that a running gitfleet container can write.
   * The policy check resolves symlinks, but the engine resolves the path again
   * when it mounts, so a writer could swap a folder for a symlink in between.
   */
  private async checkMountWriters(taskId: string, mounts: ResolvedMount[]): Promise<void> {
    if (mounts.length === 0) return;
    const running = await callEngine('list containers', 'mount writers', this.callTimeoutMs, (signal) =>
      this.docker.listContainers({
        filters: { label: [`${LABEL_MANAGED}=${MANAGED_VALUE}`] },
        abortSignal: signal,
      }),
    );
    for (const container of running) {
      const writer = container.Labels?.[LABEL_TASK] ?? container.Id;
      for (const existing of container.Mounts ?? []) {
        if (existing.Type !== 'bind' || !existing.RW) continue;
        for (const mount of mounts) {
          if (mount.source !== existing.Source && isSameOrInside(mount.source, existing.Source)) {
            throw new MountRaceError(taskId, mount.source, writer, existing.Source);
          }
        }
      }
    }
  }

  async listManaged(
    filter: { nodeId?: string; taskId?: string } = {},
  ): Promise<ManagedContainer[]> {
    const labelFilters = [`${LABEL_MANAGED}=${MANAGED_VALUE}`];
    if (filter.nodeId !== undefined) {
      labelFilters.push(`${LABEL_NODE}=${filter.nodeId}`);
    }
    if (filter.taskId !== undefined) {
      labelFilters.push(`${LABEL_TASK}=${filter.taskId}`);
    }

    const containers = await callEngine(
      'list containers',
      'managed',
      this.callTimeoutMs,
      (signal) =>
        this.docker.listContainers({
          all: true,
          filters: { label: labelFilters },
          abortSignal: signal,
        }),
    );
    return containers.map((c) => {
      const labels = c.Labels ?? {};
      return {
        id: c.Id,
        name: (c.Names[0] ?? '').replace(/^\//, ''),
        nodeId: labels[LABEL_NODE] ?? '',
        taskId: labels[LABEL_TASK] ?? '',
        epoch: Number(labels[LABEL_EPOCH]),
        claimToken: labels[LABEL_CLAIM] ?? '',
        running: c.State === 'running',
        state: c.State,
      };
    });
  }

  /**
   * Waits up to `timeoutMs` for a container to stop running. A container that is gone counts as
   * exited with an unknown (null) exit code.
   */
  async waitExit(idOrName: string, timeoutMs: number): Promise<WaitResult> {
    const container = this.docker.getContainer(idOrName);
    try {
      // Aborting the request on timeout closes its socket, so an abandoned wait leaks nothing.
      const result = (await callEngine('wait', idOrName, timeoutMs, (signal) =>
        container.wait({ condition: 'not-running', abortSignal: signal }),
      )) as { StatusCode?: number };
      return {
        exited: true,
        exitCode: typeof result.StatusCode === 'number' ? result.StatusCode : null,
      };
    } catch (error) {
      if (error instanceof DockerTimeoutError) {
        return { exited: false };
      }
      if (statusCodeOf(error) === 404) {
        return { exited: true, exitCode: null };
      }
      throw error;
    }
  }

  /** Returns the last `lines` lines of a container's stdout and stderr, or [] when it is gone. */
  async tailLogs(idOrName: string, lines: number): Promise<string[]> {
    if (lines <= 0) {
      return [];
    }
    const container = this.docker.getContainer(idOrName);
    let raw: unknown;
    try {
      raw = await callEngine('logs', idOrName, this.callTimeoutMs, (signal) =>
        container.logs({
          stdout: true,
          stderr: true,
          follow: false,
          tail: lines,
          abortSignal: signal,
        }),
      );
    } catch (error) {
      if (statusCodeOf(error) === 404) {
        return [];
      }
      throw error;
    }

    const text = demultiplexLogs(logBuffer(raw)).toString('utf8');
    return splitLogLines(text).slice(-lines);
  }

  /**
   * Sends GET http://127.0.0.1:<hostPort><path> and reports whether a 2xx or 3xx response arrived
   * within `timeoutMs`. Only the loopback address is ever contacted.
   */
  checkHttpHealth(hostPort: number, path: string, timeoutMs: number): Promise<boolean> {
    if (!Number.isInteger(hostPort) || hostPort < 1 || hostPort > 65535 || !path.startsWith('/')) {
      return Promise.resolve(false);
    }

    return new Promise((resolve) => {
      const request = http.request(
        {
          host: PUBLISH_HOST_IP,
          port: hostPort,
          path,
          method: 'GET',
          agent: false,
          signal: AbortSignal.timeout(timeoutMs),
        },
        (response) => {
          const status = response.statusCode ?? 0;
          response.resume();
          resolve(status >= 200 && status < 400);
        },
      );
      request.on('error', () => resolve(false));
      request.end();
    });
  }

  private async createOrAdopt(
    name: string,
    image: string,
    body: Dockerode.ContainerCreateOptions,
    p: StartTaskParams,
  ): Promise<{ id: string; adopted: boolean; running: boolean }> {
    try {
      const container = await callEngine('create', name, this.callTimeoutMs, (signal) =>
        // The name goes in the query and the spec in the body only, so env values never appear
        // in a request URL.
        this.docker.createContainer({
          _query: { name },
          _body: body,
          abortSignal: signal,
        } as unknown as Dockerode.ContainerCreateOptions),
      );
      return { id: container.id, adopted: false, running: false };
    } catch (error) {
      const status = statusCodeOf(error);
      if (status === 404) {
        throw new ImageNotFoundError(image, 'no such image on this engine; call ensureImage first');
      }
      // 409: the name is in use, typically by our own earlier create whose response was lost.
      if (status !== 409) {
        throw error;
      }
    }

    const existing = await this.inspectRaw(name);
    if (existing === null) {
      throw new Error(
        `Container create failed: ${name} was reported in use but is gone; retry the start`,
      );
    }
    const labels = existing.Config.Labels ?? {};
    const sameOwner =
      labels[LABEL_MANAGED] === MANAGED_VALUE &&
      labels[LABEL_NODE] === p.nodeId &&
      labels[LABEL_TASK] === p.taskId &&
      labels[LABEL_EPOCH] === String(p.epoch);
    if (!sameOwner) {
      const owner =
        labels[LABEL_MANAGED] === MANAGED_VALUE
          ? `node ${labels[LABEL_NODE]}, task ${labels[LABEL_TASK]}, epoch ${labels[LABEL_EPOCH]}`
          : 'not managed by gitfleet';
      throw new ContainerNameConflictError(name, existing.Id, owner);
    }
    return { id: existing.Id, adopted: true, running: existing.State.Running };
  }

  private async startOrRemove(containerId: string, name: string, log: Logger): Promise<void> {
    const container = this.docker.getContainer(containerId);
    try {
      await callEngine('start', name, this.callTimeoutMs, (signal) =>
        container.start({ abortSignal: signal }),
      );
      return;
    } catch (error) {
      // 304 means a concurrent adopter started it already.
      if (statusCodeOf(error) === 304) {
        return;
      }
      log.warn({ containerId, err: error }, 'container start failed; removing it');
      await this.removeQuietly(containerId, log);
      if (error instanceof DockerTimeoutError || error instanceof DockerUnavailableError) {
        throw error;
      }
      throw new ContainerStartError(name, engineMessageOf(error), statusCodeOf(error));
    }
  }

  private async removeQuietly(containerId: string, log: Logger): Promise<void> {
    try {
      await callEngine('remove', containerId, this.callTimeoutMs, (signal) =>
        this.docker.getContainer(containerId).remove({ force: true, v: true, abortSignal: signal }),
      );
    } catch (error) {
      if (statusCodeOf(error) !== 404) {
        log.error({ containerId, err: error }, 'container removal after a failed start failed');
      }
    }
  }

  private async inspectRaw(idOrName: string): Promise<Dockerode.ContainerInspectInfo | null> {
    try {
      return await callEngine('inspect', idOrName, this.callTimeoutMs, (signal) =>
        this.docker.getContainer(idOrName).inspect({ abortSignal: signal }),
      );
    } catch (error) {
      if (statusCodeOf(error) === 404) {
        return null;
      }
      throw error;
    }
  }

  private async imageExists(image: string): Promise<boolean> {
    try {
      await callEngine('inspect image', image, this.callTimeoutMs, (signal) =>
        this.inspectImage(image, signal),
      );
      return true;
    } catch (error) {
      if (statusCodeOf(error) === 404) {
        return false;
      }
      throw error;
    }
  }

  // dockerode 5's Image.inspect drops its abortSignal, so this sends the same request itself.
  private inspectImage(image: string, signal: AbortSignal): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.docker.modem.dial(
        {
          path: `/images/${image}/json`,
          method: 'GET',
          abortSignal: signal,
          statusCodes: { 200: true, 404: 'no such image', 500: 'server error' },
        },
        (error, data) => (error ? reject(error) : resolve(data)),
      );
    });
  }

  private async pullImage(image: string): Promise<void> {
    const parsed = parseImageReference(image);
    if (!parsed.ok) {
      throw new ImageNotFoundError(image, `invalid image reference: ${parsed.reason}`);
    }
    // Without a tag the engine would pull every tag of the repository.
    const tag = parsed.reference.digest ?? parsed.reference.tag ?? 'latest';
    this.logger.info({ image }, 'pulling image');

    let messages: Array<Record<string, unknown>>;
    try {
      messages = await callEngine('pull', image, this.pullTimeoutMs, async (signal) => {
        const stream = await this.docker.createImage({
          fromImage: parsed.name,
          tag,
          abortSignal: signal,
        });
        return readJsonMessages(stream, signal);
      });
    } catch (error) {
      if (error instanceof DockerUnavailableError) {
        throw error;
      }
      const reason =
        error instanceof DockerTimeoutError
          ? `pull timed out after ${this.pullTimeoutMs} ms`
          : engineMessageOf(error);
      this.logger.warn({ image, reason }, 'image pull failed');
      throw new ImageNotFoundError(image, reason);
    }

    const failure = messages.find((m) => m.error !== undefined);
    if (failure !== undefined) {
      this.logger.warn({ image, reason: String(failure.error) }, 'image pull failed');
      throw new ImageNotFoundError(image, String(failure.error));
    }
    if (!(await this.imageExists(image))) {
      throw new ImageNotFoundError(image, 'the pull ended but the image is not on the engine');
    }
    this.logger.info({ image }, 'image pulled');
  }

  private async buildFromContext(spec: ContainerSpec, contextRoot: string): Promise<string> {
    const build = spec.build as NonNullable<ContainerSpec['build']>;
    const label = spec.image ?? `${BUILT_IMAGE_PREFIX}<hash>:local`;
    const contextDir = resolveBuildContext(contextRoot, build.context);
    if (contextDir === undefined) {
      throw new ImageBuildError(
        label,
        build.context,
        `the build context is outside ${contextRoot}; use a directory inside it`,
      );
    }
    if (!fs.statSync(contextDir, { throwIfNoEntry: false })?.isDirectory()) {
      throw new ImageBuildError(label, contextDir, 'the build context is not a directory');
    }

    let tag = spec.image;
    if (tag === undefined) {
      const hash = await hashBuildContext(contextDir, build.dockerfile);
      tag = `${BUILT_IMAGE_PREFIX}${hash.slice(0, 16)}:local`;
      if (await this.imageExists(tag)) {
        return tag;
      }
    }

    await this.buildImage(contextDir, build.dockerfile, tag);
    return tag;
  }

  private async buildImage(
    contextDir: string,
    dockerfile: string | undefined,
    tag: string,
  ): Promise<void> {
    const entries = await fs.promises.readdir(contextDir);
    const started = Date.now();
    this.logger.info({ image: tag, contextDir }, 'building image');

    let messages: Array<Record<string, unknown>>;
    try {
      messages = await callEngine('build', tag, this.buildTimeoutMs, async (signal) => {
        // dockerode tars `src` (relative to `context`) itself and applies .dockerignore.
        const stream = await this.docker.buildImage(
          { context: contextDir, src: entries },
          {
            t: tag,
            dockerfile,
            rm: true,
            forcerm: true,
            labels: { [LABEL_MANAGED]: MANAGED_VALUE },
            abortSignal: signal,
          },
        );
        return readJsonMessages(stream, signal);
      });
    } catch (error) {
      if (error instanceof DockerUnavailableError) {
        throw error;
      }
      throw new ImageBuildError(tag, contextDir, engineMessageOf(error));
    }

    const failure = messages.find((m) => m.error !== undefined);
    if (failure !== undefined) {
      const output = messages
        .map((m) => (typeof m.stream === 'string' ? m.stream.trim() : ''))
        .filter((line) => line.length > 0)
        .slice(-5);
      const detail = [String(failure.error).trim(), ...output].join(' | ');
      throw new ImageBuildError(tag, contextDir, detail);
    }
    this.logger.info({ image: tag, durationMs: Date.now() - started }, 'image built');
  }
}

function exitCodeOf(state: Dockerode.ContainerInspectInfo['State']): number | null {
  if (state.Running || engineTime(state.FinishedAt) === null) {
    return null;
  }
  return state.ExitCode;
}

function engineTime(value: string | undefined): string | null {
  if (value === undefined || value === '' || value.startsWith(ZERO_TIME_PREFIX)) {
    return null;
  }
  return value;
}

function isContainerHealth(status: string | undefined): status is ContainerHealth {
  return status === 'starting' || status === 'healthy' || status === 'unhealthy';
}

function logBuffer(raw: unknown): Buffer {
  if (Buffer.isBuffer(raw)) {
    return raw;
  }
  // docker-modem parses a body that happens to be valid JSON, which only TTY output can be.
  if (typeof raw === 'string') {
    return Buffer.from(raw);
  }
  return Buffer.from(raw === null || raw === undefined ? '' : JSON.stringify(raw));
}
