import {
  ActivityCancellationType,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { NodeActivities } from '../activities';
import { assertTransition, NodeState, Transition } from '../src/core/lifecycle';
import type { EffectiveSettings } from '../src/core/settings';
import type {
  FinishInput,
  NodeStatus,
  NodeWorkflowInput,
  OwnedTask,
  WatchEvent,
} from '../src/core/types';

export const drainSignal = defineSignal<[{ reason?: string }]>('drain');
export const statusQuery = defineQuery<NodeStatus>('status');

// Git activities retry a few times on their own; each one already retries
// rejected pushes and network errors internally with backoff.
// Every activity heartbeats, so one lost with a dead worker is retried after
// the heartbeat timeout rather than after its start-to-close timeout.
const git = proxyActivities<NodeActivities>({
  startToCloseTimeout: '3 minutes',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
});

const docker = proxyActivities<NodeActivities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '15s', maximumAttempts: 5 },
});

const WATCH_MAX_MS = 5 * 60_000;
// The watch only reads container state, so the workflow may move on as soon
// as it requests cancellation. Nothing waits on cleanup.
const watcher = proxyActivities<NodeActivities>({
  startToCloseTimeout: WATCH_MAX_MS + 60_000,
  heartbeatTimeout: '10s',
  cancellationType: ActivityCancellationType.TRY_CANCEL,
  retry: { initialInterval: '1s', maximumAttempts: 3 },
});

const HISTORY_LIMIT = 4000;
const MAX_TRANSITIONS = 100;

interface Tracked extends OwnedTask {
  /** Workflow time at which a stopped service container is started again. */
  restartAt?: number;
}

export async function nodeWorkflow(input: NodeWorkflowInput): Promise<void> {
  const nodeId = input.nodeId;
  const tasks = new Map<string, Tracked>();
  for (const task of input.carried?.tasks ?? []) tasks.set(task.taskId, task);
  let state: NodeState = input.carried?.state ?? 'IDLE';
  if (state === 'ATTEMPT_CLAIM') state = tasks.size > 0 ? 'ACTIVE' : 'IDLE';
  let settings: EffectiveSettings = input.initialSettings;
  let lastRenewalAt = input.carried?.lastRenewalAt ?? Date.now();
  const transitions: Transition[] = [];
  let drainReason: string | undefined;

  setHandler(drainSignal, ({ reason }) => {
    drainReason = reason ?? 'drain requested';
  });
  setHandler(statusQuery, () => ({
    nodeId,
    state,
    draining: drainReason !== undefined,
    lastRenewalAt: new Date(lastRenewalAt).toISOString(),
    tasks: [...tasks.values()].map(({ taskId, epoch, kind, containerId, restarts }) => ({
      taskId,
      epoch,
      kind,
      containerId,
      restarts,
    })),
    transitions: transitions.map((t) => ({ ...t, at: new Date(t.at).toISOString() })),
  }));

  function moveTo(to: NodeState, reason: string, taskId?: string): void {
    assertTransition(state, to);
    if (state === to) return;
    const transition: Transition = { from: state, to, reason, taskId, at: Date.now() };
    transitions.push(transition);
    if (transitions.length > MAX_TRANSITIONS) transitions.shift();
    log.info('node transition', { nodeId, taskId, from: state, to, reason });
    state = to;
  }

  function settle(reason: string, taskId?: string): void {
    moveTo(tasks.size > 0 ? 'ACTIVE' : 'IDLE', reason, taskId);
  }

  function claims() {
    return [...tasks.values()].map(({ taskId, epoch, claimToken, containerId }) => ({
      taskId,
      epoch,
      claimToken,
      containerId,
    }));
  }

  async function finish(task: Tracked, fields: Omit<FinishInput, 'taskId' | 'epoch' | 'claimToken' | 'specHash'>) {
    tasks.delete(task.taskId);
    try {
      await git.finishTask({ ...fields, taskId: task.taskId, epoch: task.epoch, claimToken: task.claimToken, specHash: task.specHash });
    } catch (err) {
      // The claim then expires on its own; another node takes it after the expiry.
      log.error('could not record task result', { nodeId, taskId: task.taskId, error: String(err) });
    }
  }

  async function stopContainer(task: Tracked) {
    if (!task.containerId) return { exitCode: null as number | null, lastLog: [] as string[] };
    const result = await docker.stopTask({ taskId: task.taskId, containerId: task.containerId });
    task.containerId = undefined;
    return result;
  }

  async function start(task: Tracked): Promise<void> {
    const result = await docker.startTask(task).catch((err) => ({
      ok: false as const,
      permanent: false,
      fenced: false,
      error: String(err),
      containerId: undefined,
      hostPorts: undefined,
    }));
    if (result.ok) {
      task.containerId = result.containerId;
      task.hostPorts = result.hostPorts;
      task.startedAt = Date.now();
      task.restartAt = undefined;
      return;
    }
    if (result.fenced) {
      // Try again after the next heartbeat; it renews the lease or reports the claim lost.
      log.warn('container start deferred until claims are renewed', { nodeId, taskId: task.taskId });
      task.restartAt = Date.now() + settings.taskHeartbeatMs;
      return;
    }
    // Compensation: a container that did not start gives its claim back.
    const attempts = task.attempts + 1;
    const givenUp = result.permanent === true || attempts > (task.spec.max_retries ?? 3);
    await finish(task, {
      outcome: result.permanent ? 'rejected' : 'failed',
      error: result.error,
      attempts,
      givenUp,
      delayMs: retryDelay(attempts),
    });
    settle('container start failed', task.taskId);
  }

  async function handleEvent(event: WatchEvent): Promise<void> {
    const task = tasks.get(event.taskId);
    if (!task || task.containerId !== event.containerId) return;
    const stopped = await stopContainer(task);
    const exitCode = event.exitCode ?? stopped.exitCode ?? null;
    log.info('container ended', { nodeId, taskId: task.taskId, reason: event.reason, exitCode });

    if (task.kind === 'batch') {
      if (event.reason === 'exited' && exitCode === 0) {
        await finish(task, { outcome: 'succeeded', exitCode, lastLog: stopped.lastLog, attempts: task.attempts + 1 });
      } else {
        const attempts = task.attempts + 1;
        const error =
          event.reason === 'timeout'
            ? `batch run exceeded timeout_s=${task.spec.timeout_s}`
            : `container ${event.reason}${exitCode !== null ? ` with exit code ${exitCode}` : ''}`;
        await finish(task, {
          outcome: 'failed',
          exitCode,
          lastLog: stopped.lastLog,
          error,
          attempts,
          givenUp: attempts > (task.spec.max_retries ?? 2),
          delayMs: retryDelay(attempts),
        });
      }
      settle('batch task ended', task.taskId);
      return;
    }

    const policy = task.spec.restart_policy;
    const mode = policy?.policy ?? 'always';
    const failed = event.reason !== 'exited' || exitCode !== 0;
    const wantsRestart = mode === 'always' || (mode === 'on-failure' && failed);
    if (wantsRestart && task.restarts < (policy?.max_restarts ?? 5)) {
      const base = (policy?.backoff_s ?? 2) * 1000;
      const delay = Math.min(base * 2 ** task.restarts, (policy?.max_backoff_s ?? 60) * 1000);
      task.restarts++;
      task.restartAt = Date.now() + delay;
      return;
    }
    if (!failed && !wantsRestart) {
      // A clean exit under a policy that does not restart it ends the service for good.
      await finish(task, { outcome: 'succeeded', exitCode, lastLog: stopped.lastLog });
      settle('service exited cleanly', task.taskId);
      return;
    }
    const reschedules = task.reschedules + 1;
    const givenUp = reschedules > settings.rescheduleLimit;
    await finish(task, {
      outcome: givenUp && failed ? 'failed' : 'released',
      exitCode,
      lastLog: stopped.lastLog,
      error: `service container ${event.reason}${exitCode !== null ? ` with exit code ${exitCode}` : ''} after ${task.restarts} restarts; restart budget used up on this node`,
      reschedules,
      givenUp,
      delayMs: retryDelay(reschedules),
    });
    settle('service gave up on this node', task.taskId);
  }

  // Watch of the running containers; restarted whenever the set changes.
  let watchKey = '';
  let watchScope: CancellationScope | undefined;
  let watchEvents: WatchEvent[] | undefined;

  function ensureWatch(): void {
    const items = [...tasks.values()]
      .filter((t) => t.containerId)
      .map((t) => ({
        taskId: t.taskId,
        containerId: t.containerId!,
        kind: t.kind,
        spec: t.spec,
        hostPorts: t.hostPorts,
        startedAt: t.startedAt ?? Date.now(),
      }));
    const key = JSON.stringify(items.map((i) => [i.taskId, i.containerId]));
    if (key === watchKey) return;
    watchScope?.cancel();
    watchScope = undefined;
    watchKey = key;
    if (items.length === 0) return;
    const scope = new CancellationScope();
    watchScope = scope;
    scope
      .run(() => watcher.watchTasks({ items, maxMs: WATCH_MAX_MS }))
      .then(
        (events) => {
          if (watchScope !== scope) return;
          watchEvents = events;
          watchKey = '';
        },
        (err) => {
          if (watchScope !== scope || isCancellation(err)) return;
          log.warn('container watch failed; restarting it', { nodeId, error: String(err) });
          watchEvents = [];
          watchKey = '';
        },
      );
  }

  async function heartbeat(): Promise<void> {
    const attemptStart = Date.now();
    try {
      const result = await git.heartbeat({ state, owned: claims() });
      settings = result.settings;
      if (result.renewed) lastRenewalAt = attemptStart;
      for (const lost of result.lost) {
        const task = tasks.get(lost.taskId);
        if (!task) continue;
        // The activity already stopped the container; forget the claim.
        tasks.delete(lost.taskId);
        settle(`claim lost: ${lost.reason}`, lost.taskId);
      }
    } catch (err) {
      log.warn('heartbeat failed', { nodeId, error: String(err) });
    }
  }

  async function selfFence(): Promise<void> {
    // Past this point another node may soon take the claims over, so the
    // containers stop now. The claims are not released, because the remote
    // could not be reached.
    log.error('could not renew claims in time; stopping containers', {
      nodeId,
      sinceRenewalMs: Date.now() - lastRenewalAt,
      selfFenceMs: settings.selfFenceMs,
    });
    for (const task of [...tasks.values()]) {
      await stopContainer(task).catch(() => undefined);
      tasks.delete(task.taskId);
    }
    settle('self-fenced: claims not renewed in time');
  }

  async function drain(reason: string): Promise<void> {
    moveTo('DRAINING', reason);
    watchScope?.cancel();
    for (const task of [...tasks.values()]) {
      const stopped = await stopContainer(task);
      await finish(task, { outcome: 'released', lastLog: stopped.lastLog, exitCode: stopped.exitCode, error: undefined });
    }
    await git.leaveRoster();
    moveTo('STOPPED', reason);
  }

  await docker.reconcile({ owned: claims() });

  let nextHeartbeat = 0;
  let nextClaim = input.carried ? Date.now() + settings.idlePollMs : 0;
  let nextReconcile = Date.now() + settings.rosterHeartbeatMs;
  for (;;) {
    if (drainReason !== undefined) {
      await drain(drainReason);
      return;
    }
    if (Date.now() >= nextHeartbeat) {
      await heartbeat();
      nextHeartbeat = Date.now() + (tasks.size > 0 ? settings.taskHeartbeatMs : settings.rosterHeartbeatMs);
    }
    if (tasks.size > 0 && Date.now() - lastRenewalAt > settings.selfFenceMs) await selfFence();

    const events = watchEvents;
    watchEvents = undefined;
    for (const event of events ?? []) await handleEvent(event);

    for (const task of [...tasks.values()]) {
      if (task.restartAt !== undefined && Date.now() >= task.restartAt) {
        log.info('restarting service container', { nodeId, taskId: task.taskId, restarts: task.restarts });
        await start(task);
      }
    }

    if (Date.now() >= nextReconcile) {
      await docker.reconcile({ owned: claims() });
      nextReconcile = Date.now() + settings.rosterHeartbeatMs;
    }

    if (drainReason === undefined && tasks.size < input.maxTasks && Date.now() >= nextClaim) {
      moveTo('ATTEMPT_CLAIM', 'looking for work');
      const hadTasks = tasks.size > 0;
      const claimStart = Date.now();
      const result = await git.claim({ owned: [...tasks.keys()] }).catch((err) => {
        log.warn('claim attempt failed', { nodeId, error: String(err) });
        return { outcome: 'none' as const, reason: 'claim attempt failed' };
      });
      if (result.outcome === 'claimed') {
        const task: Tracked = result.task;
        tasks.set(task.taskId, task);
        if (!hadTasks) lastRenewalAt = claimStart;
        moveTo('ACTIVE', 'claimed', task.taskId);
        await start(task);
        nextHeartbeat = Math.min(nextHeartbeat, Date.now() + settings.taskHeartbeatMs);
        // A busier node waits longer before claiming more, so idle nodes get work first.
        nextClaim = Date.now() + tasks.size * settings.idlePollMs + Math.random() * settings.claimJitterMs;
      } else {
        settle(result.outcome === 'lost' ? `lost race for ${result.taskId}: ${result.reason}` : result.reason);
        nextClaim = Date.now() + settings.idlePollMs + Math.random() * settings.claimJitterMs;
      }
    }

    ensureWatch();

    if (workflowInfo().historyLength > (input.historyLimit ?? HISTORY_LIMIT) || workflowInfo().continueAsNewSuggested) {
      watchScope?.cancel();
      await continueAsNew<typeof nodeWorkflow>({
        ...input,
        initialSettings: settings,
        carried: { state, tasks: [...tasks.values()], lastRenewalAt },
      });
    }

    const dues = [nextHeartbeat, nextReconcile];
    // The self-fence time matters only while tasks are held. Without tasks a renewal
    // time in the past would make the wait 0 on every pass, and the loop would spin
    // without yielding until Temporal's deadlock detector ends the workflow task.
    if (tasks.size > 0) dues.push(lastRenewalAt + settings.selfFenceMs + 1);
    if (tasks.size < input.maxTasks) dues.push(nextClaim);
    for (const task of tasks.values()) if (task.restartAt !== undefined) dues.push(task.restartAt);
    // At least a short wait per pass, so no combination of due times can make the loop spin.
    const wait = Math.max(50, Math.min(...dues) - Date.now());
    await condition(() => drainReason !== undefined || watchEvents !== undefined, wait);
  }
}

/** Growing delay before a failed task is tried again: 5 s doubling to at most 5 min. */
function retryDelay(attempt: number): number {
  return Math.min(5_000 * 2 ** Math.max(0, attempt - 1), 300_000);
}
