import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import type { Logger } from 'pino';
import { createActivities, NodeContext } from '../../activities';
import { ContainerRuntime } from '../docker/runtime';
import type { NodePolicy } from '../docker/policy';
import { ControlRepo } from '../git/control-repo';
import { HeartbeatObserver } from '../core/observer';
import { effectiveSettings, resolveSettings, settingsProblems, SettingsOverrides } from '../core/settings';
import { nodeTaskQueue, nodeWorkflowId, NodeWorkflowInput } from '../core/types';
import { SettingsSchema, TASK_ID_PATTERN } from '../state/schemas';
import { WORKFLOW_BUNDLE } from '../temporal/bundle';
import { temporalConnectError } from '../temporal/connect-error';
import { redactUrl } from '../util/redact';
import { fenceKeeperPidPath, leasePath, LeaseWriter, liveFenceKeeper } from './lease';

export interface NodeOptions {
  repo: string;
  branch: string;
  id?: string;
  roles: string[];
  temporalAddress: string;
  namespace: string;
  workdir: string;
  maxTasks: number;
  overrides: SettingsOverrides;
  policy: NodePolicy;
  secretsFile?: string;
  contextRoot: string;
  historyLimit?: number;
  logger: Logger;
}

const VERSION: string = require('../../../package.json').version;

/** Read the node id kept in the work folder, or store the given or a new one there. */
export function resolveNodeId(workdir: string, requested?: string): string {
  const file = path.join(workdir, 'node-id');
  fs.mkdirSync(workdir, { recursive: true });
  const stored = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : undefined;
  // Node ids name workflows, task queues, container labels and commit authors, so they follow the task id rules.
  if (requested !== undefined && !TASK_ID_PATTERN.test(requested)) {
    throw new Error(
      `invalid node id ${JSON.stringify(requested)}: use 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
  if (requested) {
    if (stored && stored !== requested) {
      throw new Error(
        `--id ${requested} differs from the id "${stored}" stored in ${file}; use --id ${stored}, or another --workdir for a second node`,
      );
    }
    if (!stored) fs.writeFileSync(file, `${requested}\n`);
    return requested;
  }
  if (stored) return stored;
  const generated = `${os.hostname().toLowerCase().replace(/[^a-z0-9-]/g, '-')}-${Math.random().toString(36).slice(2, 6)}`;
  fs.writeFileSync(file, `${generated}\n`);
  return generated;
}

/** Secret values from GITFLEET_SECRET_<NAME> variables and an optional JSON file of names to values. */
export function loadSecrets(file: string | undefined): Record<string, string> {
  const secrets: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('GITFLEET_SECRET_') && value !== undefined) secrets[key.slice('GITFLEET_SECRET_'.length)] = value;
  }
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`secrets file ${file} could not be read as JSON (${(err as Error).name}); write {"NAME": "value", ...}`);
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new Error(`secrets file ${file} must be a JSON object of names to string values`);
    }
    for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
      if (typeof value !== 'string') throw new Error(`secrets file ${file}: value of "${name}" must be a string`);
      secrets[name] = value;
    }
  }
  return secrets;
}

function spawnFenceKeeper(workdir: string, nodeId: string, logger: Logger): void {
  const out = fs.openSync(path.join(workdir, 'fence-keeper.log'), 'a');
  const child = spawn(
    process.execPath,
    [path.resolve(__dirname, '..', 'cli.js'), 'fence-keeper', '--lease', leasePath(workdir), '--id', nodeId, '--node-pid', String(process.pid)],
    { detached: true, stdio: ['ignore', out, out] },
  );
  child.unref();
  fs.closeSync(out);
  fs.writeFileSync(fenceKeeperPidPath(workdir), `${child.pid}\n`);
  logger.info({ pid: child.pid }, 'fence keeper started');
}

/**
 * Make sure a fence keeper watches this node. A keeper left by an earlier
 * process of the node keeps its deadline, so containers whose claims are
 * still live survive a quick restart. Without such a keeper, the lease starts
 * empty.
 */
async function ensureFenceKeeper(workdir: string, nodeId: string, lease: LeaseWriter, logger: Logger): Promise<void> {
  const running = liveFenceKeeper(workdir, nodeId);
  const adopted = running !== undefined && lease.adoptCurrent();
  // A keeper that read the lease just before the adoption may still decide to
  // exit. After two of its 0.5 s polls it has read this process's pid.
  if (adopted) await new Promise((resolve) => setTimeout(resolve, 1200));
  if (adopted && liveFenceKeeper(workdir, nodeId) === running) {
    logger.info({ pid: running }, 'fence keeper of an earlier node process keeps watching');
    return;
  }
  // Until the first claim, the keeper has nothing to keep alive.
  lease.renew(0);
  spawnFenceKeeper(workdir, nodeId, logger);
}

let runtimeInstalled = false;

function installRuntime(logger: Logger): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  // The node handles SIGINT and SIGTERM itself (drain first), so the SDK must not stop the worker on them.
  Runtime.install({
    shutdownSignals: [],
    logger: new DefaultLogger('INFO', (entry) => {
      const level = entry.level.toLowerCase() as 'trace' | 'debug' | 'info' | 'warn' | 'error';
      logger[level]({ ...(entry.meta ?? {}) }, entry.message);
    }),
  });
}

/** Run one node until it is drained (SIGINT or SIGTERM, or `gitfleet drain`). */
export async function runNode(options: NodeOptions): Promise<void> {
  const workdir = path.resolve(options.workdir);
  const nodeId = resolveNodeId(workdir, options.id);
  const logger = options.logger.child({ nodeId });
  const secrets = loadSecrets(options.secretsFile);
  installRuntime(logger);

  const defaults = effectiveSettings(SettingsSchema.parse({}), options.overrides);
  const problems = settingsProblems(defaults);
  if (problems.length > 0) throw new Error(`invalid node settings: ${problems.join('; ')}`);

  const repo = new ControlRepo({
    remote: options.repo,
    branch: options.branch,
    dir: path.join(workdir, 'clone'),
    author: { name: `gitfleet node ${nodeId}`, email: `${nodeId}@gitfleet.invalid` },
    pushRetries: defaults.pushRetries,
    logger,
  });
  const first = await repo.snapshot();
  const initial = first.settings.ok
    ? resolveSettings(first.settings.value, options.overrides, defaults).settings
    : defaults;
  logger.info({ repo: redactUrl(options.repo), branch: options.branch, commit: first.commit }, 'control repo reachable');

  const lease = new LeaseWriter(leasePath(workdir), nodeId);
  await ensureFenceKeeper(workdir, nodeId, lease, logger);

  const context: NodeContext = {
    nodeId,
    roles: options.roles,
    version: VERSION,
    repo,
    runtime: new ContainerRuntime({ logger }),
    policy: options.policy,
    observer: new HeartbeatObserver(),
    lease,
    overrides: options.overrides,
    secrets,
    contextRoot: options.contextRoot,
    logger,
    startedAt: new Date().toISOString(),
  };

  const connection = await NativeConnection.connect({ address: options.temporalAddress }).catch((err: unknown) => {
    throw temporalConnectError(options.temporalAddress, err);
  });
  const worker = await Worker.create({
    connection,
    namespace: options.namespace,
    taskQueue: nodeTaskQueue(nodeId),
    activities: createActivities(context),
    ...(fs.existsSync(WORKFLOW_BUNDLE)
      ? { workflowBundle: { codePath: WORKFLOW_BUNDLE } }
      : { workflowsPath: require.resolve('../../workflows') }),
    shutdownGraceTime: '15s',
    shutdownForceTime: '30s',
    maxConcurrentActivityTaskExecutions: 20,
  });

  const clientConnection = await Connection.connect({ address: options.temporalAddress });
  const client = new Client({ connection: clientConnection, namespace: options.namespace });
  const input: NodeWorkflowInput = {
    nodeId,
    maxTasks: options.maxTasks,
    overrides: options.overrides,
    initialSettings: initial,
    historyLimit: options.historyLimit,
  };
  const handle = await client.workflow.start('nodeWorkflow', {
    workflowId: nodeWorkflowId(nodeId),
    taskQueue: nodeTaskQueue(nodeId),
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
  });
  logger.info({ workflowId: handle.workflowId, runId: handle.firstExecutionRunId, taskQueue: nodeTaskQueue(nodeId) }, 'node workflow attached');

  // A busy server may miss one request, so the drain signal is sent up to five times.
  const signalDrain = async (reason: string): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await handle.signal('drain', { reason });
        return;
      } catch (err) {
        if (attempt >= 5) throw err;
        logger.warn({ attempt, err: (err as Error).message }, 'drain signal failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
      }
    }
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      logger.info({ signal }, 'draining: releasing tasks, then stopping (send again to stop at once)');
      signalDrain(`${signal} received`).catch((err: Error) => {
        logger.error({ err: err.message }, 'could not signal drain; stopping the worker');
        worker.shutdown();
      });
    } else {
      logger.warn({ signal }, 'stopping at once; claims expire and the fence keeper stops containers');
      worker.shutdown();
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await worker.runUntil(handle.result());
    logger.info('node drained and stopped');
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await clientConnection.close();
    await connection.close();
  }
}
