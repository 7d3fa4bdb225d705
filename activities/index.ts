import * as os from 'node:os';
import { randomUUID } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { Logger } from 'pino';
import type { ControlRepo, ControlSnapshot } from '../src/git/control-repo';
import type { ContainerRuntime } from '../src/docker/runtime';
import type { NodePolicy } from '../src/docker/policy';
import { checkPolicy } from '../src/docker/policy';
import { HeartbeatObserver, monotonicMs } from '../src/core/observer';
import { availability, candidates, SelectionInput } from '../src/core/selection';
import { effectiveSettings, EffectiveSettings, resolveSettings, SettingsOverrides } from '../src/core/settings';
import type { ScheduledTask } from '../src/state/control-files';
import { ASSIGNMENTS_FILE, assignmentOf, ROSTER_FILE } from '../src/state/control-files';
import { redactValues } from '../src/util/redact';
import { formatTaskProblem } from '../src/state/errors';
import type { Assignment, AssignmentsFile, NodeEntry, RosterFile } from '../src/state/schemas';
import { SettingsSchema } from '../src/state/schemas';
import { shortHash } from '../src/util/hash';
import { crashPoint } from '../src/util/fault';
import type { LeaseWriter } from '../src/node/lease';
import type {
  ClaimResult,
  FinishInput,
  HeartbeatInput,
  HeartbeatResult,
  OwnedTask,
  StartResult,
  StopResult,
  WatchEvent,
  WatchItem,
} from '../src/core/types';

/** Everything the activities of one node use; activities run only in that node's process. */
export interface NodeContext {
  nodeId: string;
  roles: string[];
  version: string;
  repo: ControlRepo;
  runtime: ContainerRuntime;
  policy: NodePolicy;
  observer: HeartbeatObserver;
  lease: LeaseWriter;
  overrides: SettingsOverrides;
  /** Secret values by name, from the node's environment or secrets file. */
  secrets: Record<string, string>;
  /** Folder that relative build contexts are resolved against. */
  contextRoot: string;
  logger: Logger;
  startedAt: string;
}

export function specHashOf(task: ScheduledTask): string {
  return shortHash({ task: task.task, spec: task.spec });
}

function isoNow(): string {
  return new Date().toISOString();
}

function metrics(): { cpu_load: number; memory_percent: number } {
  const memory = 100 * (1 - os.freemem() / os.totalmem());
  return { cpu_load: Number(os.loadavg()[0].toFixed(2)), memory_percent: Number(memory.toFixed(1)) };
}

/** Last settings that passed every check, per node process; starts from the defaults. */
const lastGoodSettings = new WeakMap<NodeContext, EffectiveSettings>();

/**
 * Settings from fleet.json with the node's overrides. An invalid or unsafe
 * combination is reported through the snapshot's problems and the node keeps
 * its last valid settings.
 */
function settingsFrom(ctx: NodeContext, snapshot: ControlSnapshot): EffectiveSettings {
  const fallback = lastGoodSettings.get(ctx) ?? effectiveSettings(SettingsSchema.parse({}), ctx.overrides);
  if (!snapshot.settings.ok) return fallback;
  const { settings, problems } = resolveSettings(snapshot.settings.value, ctx.overrides, fallback);
  if (problems.length > 0) {
    ctx.logger.error({ problems }, 'fleet.json settings combined with node flags are unsafe; keeping the last valid settings');
    return fallback;
  }
  lastGoodSettings.set(ctx, settings);
  return settings;
}

/** Collect the messages of every control file and task problem in a snapshot. */
function problemsOf(snapshot: ControlSnapshot): string[] {
  const problems: string[] = [];
  for (const parsed of [snapshot.schedule, snapshot.roster, snapshot.assignments, snapshot.settings]) {
    if (!parsed.ok) problems.push(parsed.error.message);
  }
  if (snapshot.schedule.ok) problems.push(...snapshot.schedule.value.problems.map(formatTaskProblem));
  return problems;
}

/**
 * Run `fn` while heartbeating the activity every 2 s, so a worker that dies
 * mid-activity is noticed after the heartbeat timeout instead of the much
 * longer start-to-close timeout.
 */
async function withHeartbeat<T>(fn: () => Promise<T>): Promise<T> {
  const context = Context.current();
  const timer = setInterval(() => context.heartbeat(), 2000);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

/** Wrap every activity except the watch (which heartbeats itself) in withHeartbeat. */
function heartbeating<A extends Record<string, (...args: any[]) => Promise<any>>>(activities: A, except: string[]): A {
  const wrapped: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = except.includes(name) ? fn : (...args: unknown[]) => withHeartbeat(() => fn(...args));
  }
  return wrapped as A;
}

export function createActivities(ctx: NodeContext) {
  return heartbeating(activityFunctions(ctx), ['watchTasks']);
}

function activityFunctions(ctx: NodeContext) {
  const log = ctx.logger;
  let reportedProblems = '';
  let heartbeatSeq = 0;
  const hideSecrets = (text: string) => redactValues(text, Object.values(ctx.secrets));

  /** Log control-file problems once per change, not once per poll. */
  function report(problems: string[]): void {
    const key = problems.join('\n');
    if (key === reportedProblems) return;
    reportedProblems = key;
    if (problems.length === 0) log.info('control repo files are valid again');
    for (const problem of problems) log.error({ problem }, 'control repo file problem');
  }

  function selectionInput(snapshot: ControlSnapshot, owned: Set<string>, settings: EffectiveSettings): SelectionInput | undefined {
    if (!snapshot.schedule.ok || !snapshot.assignments.ok) return undefined;
    return {
      nodeId: ctx.nodeId,
      roles: ctx.roles,
      tasks: snapshot.schedule.value.tasks,
      assignments: snapshot.assignments.value,
      unchangedForMs: (id) => ctx.observer.unchangedForMs(id),
      expiryMs: settings.taskExpiryMs,
      owned,
      nowMs: Date.now(),
      specHash: specHashOf,
    };
  }

  function rosterEntry(roster: RosterFile, state: string, taskCount: number): RosterFile {
    const nodes = [...roster.nodes];
    const index = nodes.findIndex((n) => n.id === ctx.nodeId);
    const previous: Partial<NodeEntry> = index >= 0 ? nodes[index] : {};
    const entry: NodeEntry = {
      ...previous,
      id: ctx.nodeId,
      started_at: ctx.startedAt,
      last_seen: isoNow(),
      metrics: { ...(previous.metrics ?? {}), ...metrics() },
      roles: ctx.roles,
      state,
      version: ctx.version,
      task_count: taskCount,
      heartbeat_seq: ++heartbeatSeq,
    };
    if (index >= 0) nodes[index] = entry;
    else nodes.push(entry);
    return { ...roster, nodes };
  }

  return {
    /** Renew the roster entry and every owned claim in one commit; stop containers of lost claims. */
    async heartbeat(input: HeartbeatInput): Promise<HeartbeatResult> {
      const startedAt = monotonicMs();
      let settings: EffectiveSettings | undefined;
      let problems: string[] = [];
      const outcome = await ctx.repo.edit(`heartbeat ${ctx.nodeId}`, (snapshot) => {
        settings = settingsFrom(ctx, snapshot);
        problems = problemsOf(snapshot);
        const lost: Array<{ taskId: string; reason: string }> = [];
        const writes: Record<string, unknown> = {};
        if (snapshot.roster.ok) {
          writes[ROSTER_FILE] = rosterEntry(snapshot.roster.value, input.state, input.owned.length);
        }
        let renewed = input.owned.length === 0;
        if (snapshot.assignments.ok) {
          ctx.observer.observe(snapshot.assignments.value);
          const file: AssignmentsFile = {
            ...snapshot.assignments.value,
            assignments: { ...snapshot.assignments.value.assignments },
          };
          const rawIds = new Set(
            snapshot.schedule.ok
              ? snapshot.schedule.value.file.tasks.map((t) => (t as { id?: unknown })?.id)
              : [],
          );
          for (const owned of input.owned) {
            const entry = assignmentOf(file, owned.taskId);
            if (!entry || entry.node_id !== ctx.nodeId || entry.epoch !== owned.epoch || entry.claim_token !== owned.claimToken) {
              lost.push({
                taskId: owned.taskId,
                reason: entry?.node_id && entry.node_id !== ctx.nodeId
                  ? `taken over by ${entry.node_id} at epoch ${entry.epoch ?? '?'}`
                  : 'claim no longer on the remote',
              });
              continue;
            }
            if (snapshot.schedule.ok && !rawIds.has(owned.taskId)) {
              lost.push({ taskId: owned.taskId, reason: 'removed from schedule.json' });
              file.assignments[owned.taskId] = { ...entry, status: 'released', node_id: null, finished_at: isoNow() };
              continue;
            }
            file.assignments[owned.taskId] = {
              ...entry,
              task_heartbeat: isoNow(),
              heartbeat_seq: (entry.heartbeat_seq ?? 0) + 1,
              status: owned.containerId ? 'running' : entry.status,
              container_id: owned.containerId ?? entry.container_id ?? null,
            };
          }
          renewed = true;
          writes[ASSIGNMENTS_FILE] = file;
        }
        return { result: { lost, renewed }, writes };
      }, { crashTag: 'heartbeat' });
      const { lost, renewed } = outcome.result;
      if (renewed && input.owned.length > lost.length) {
        ctx.lease.renew(settings!.selfFenceMs - (monotonicMs() - startedAt));
      }
      for (const item of lost) {
        const owned = input.owned.find((o) => o.taskId === item.taskId);
        log.warn({ taskId: item.taskId, reason: item.reason }, 'claim lost; stopping its container');
        if (owned?.containerId) await ctx.runtime.stopAndRemove(owned.containerId);
      }
      report(problems);
      return { settings: settings!, renewed, lost, problems };
    },

    /** Pick the best claimable task and race for it; the push is the commit point. */
    async claim(input: { owned: string[] }): Promise<ClaimResult> {
      const owned = new Set(input.owned);
      const snapshot = await ctx.repo.snapshot();
      const settings = settingsFrom(ctx, snapshot);
      if (snapshot.assignments.ok) ctx.observer.observe(snapshot.assignments.value);
      report(problemsOf(snapshot));
      const selection = selectionInput(snapshot, owned, settings);
      if (!selection) return { outcome: 'none', reason: 'schedule.json or assignments.json is invalid' };
      const best = candidates(selection)[0];
      if (!best) return { outcome: 'none', reason: 'no claimable task' };

      await new Promise((resolve) => setTimeout(resolve, Math.random() * settings.claimJitterMs));
      const pushStart = monotonicMs();
      const taskId = best.task.id;
      const claimToken = randomUUID();
      type Attempt =
        | { won: false; reason: string }
        | { won: true; task: ScheduledTask; epoch: number; previous?: Assignment; reason: string };
      const outcome = await ctx.repo.edit<Attempt>(`claim ${taskId} by ${ctx.nodeId}`, (fresh) => {
        if (fresh.assignments.ok) ctx.observer.observe(fresh.assignments.value);
        const input = selectionInput(fresh, owned, settingsFrom(ctx, fresh));
        const task = input?.tasks.find((t) => t.task.id === taskId);
        if (!input || !task) return { result: { won: false, reason: 'task left the schedule' } };
        const check = availability(input, task);
        if (!check.claimable) return { result: { won: false, reason: check.reason } };
        const previous: Assignment | undefined = assignmentOf(input.assignments, taskId);
        const epoch = (previous?.epoch ?? 0) + 1;
        const now = isoNow();
        const entry: Assignment = {
          ...(previous ?? {}),
          node_id: ctx.nodeId,
          claimed_at: now,
          task_heartbeat: now,
          heartbeat_seq: 0,
          status: 'claimed',
          epoch,
          claim_token: claimToken,
          container_id: null,
          // The result fields describe the previous run; a new claim starts without them.
          exit_code: null,
          finished_at: null,
          last_error: previous?.last_error ?? null,
        };
        const file = { ...input.assignments, assignments: { ...input.assignments.assignments, [taskId]: entry } };
        return {
          result: { won: true, task, epoch, previous, reason: check.reason },
          writes: { [ASSIGNMENTS_FILE]: file },
        };
      }, { crashTag: 'claim' });
      const result = outcome.result;
      if (!result.won) {
        log.info({ taskId, reason: result.reason, rejections: outcome.rejections }, 'claim attempt lost');
        return { outcome: 'lost', taskId, reason: result.reason };
      }
      ctx.lease.renew(settings.selfFenceMs - (monotonicMs() - pushStart));
      const specHash = specHashOf(result.task);
      const sameSpec = result.previous?.spec_hash === specHash;
      log.info({ taskId, epoch: result.epoch, reason: result.reason, rejections: outcome.rejections }, 'task claimed');
      return {
        outcome: 'claimed',
        task: {
          taskId,
          epoch: result.epoch,
          claimToken,
          kind: result.task.spec.kind,
          spec: result.task.spec,
          specHash,
          config: result.task.task.config,
          restarts: 0,
          attempts: sameSpec ? result.previous?.attempts ?? 0 : 0,
          reschedules: sameSpec ? result.previous?.reschedules ?? 0 : 0,
        },
      };
    },

    /** Create and start the task's container, removing any older container of the task first. */
    async startTask(task: OwnedTask): Promise<StartResult> {
      // A container started after the lease ran out could overlap a takeover,
      // so starts wait until a heartbeat renews the claims again.
      const remaining = ctx.lease.remainingMs();
      if (remaining < 1000) {
        return { ok: false, fenced: true, error: `claims not renewed in time (lease ${remaining} ms); not starting ${task.taskId}` };
      }
      for (const stale of await ctx.runtime.listManaged({ nodeId: ctx.nodeId, taskId: task.taskId })) {
        if (stale.epoch !== task.epoch || stale.claimToken !== task.claimToken) {
          log.warn({ taskId: task.taskId, containerId: stale.id, epoch: stale.epoch }, 'removing container of an older claim');
          await ctx.runtime.stopAndRemove(stale.id);
        }
      }
      const policy = checkPolicy(task.spec, ctx.policy);
      if (!policy.ok) {
        return { ok: false, permanent: true, error: `rejected by node ${ctx.nodeId} policy: ${policy.errors.join('; ')}` };
      }
      const env: Record<string, string> = {
        GITFLEET_TASK_ID: task.taskId,
        GITFLEET_NODE_ID: ctx.nodeId,
        GITFLEET_EPOCH: String(task.epoch),
        GITFLEET_TASK_CONFIG: JSON.stringify(task.config ?? null),
      };
      for (const name of task.spec.secrets ?? []) {
        const value = ctx.secrets[name];
        if (value === undefined) {
          return {
            ok: false,
            permanent: true,
            error: `secret "${name}" is not defined on node ${ctx.nodeId}; set GITFLEET_SECRET_${name} or add it to the node's secrets file`,
          };
        }
        env[name] = value;
      }
      try {
        const image = await ctx.runtime.ensureImage(task.spec, { contextRoot: ctx.contextRoot });
        const started = await ctx.runtime.startTask({
          nodeId: ctx.nodeId,
          taskId: task.taskId,
          epoch: task.epoch,
          claimToken: task.claimToken,
          spec: task.spec,
          image,
          env,
          policy: ctx.policy,
        });
        log.info({ taskId: task.taskId, epoch: task.epoch, containerId: started.containerId, adopted: started.adopted }, 'container started');
        crashPoint('start:after-start');
        const hostPorts: Record<string, number> = {};
        for (const [port, hostPort] of Object.entries(started.hostPorts)) hostPorts[String(port)] = Number(hostPort);
        return { ok: true, containerId: started.containerId, hostPorts };
      } catch (err) {
        const error = err as Error;
        const permanent = ['ImageNotFoundError', 'ContainerPolicyError'].includes(error.name);
        const message = hideSecrets(error.message);
        log.error({ taskId: task.taskId, err: message }, 'container start failed');
        return { ok: false, permanent, error: message };
      }
    },

    /** Wait until a watched container exits, turns unhealthy or overruns, or until maxMs passes. */
    async watchTasks(input: { items: WatchItem[]; maxMs: number }): Promise<WatchEvent[]> {
      const context = Context.current();
      const deadline = Date.now() + input.maxMs;
      const failures = new Map<string, number>();
      const lastCheck = new Map<string, number>();
      while (Date.now() < deadline) {
        const events: WatchEvent[] = [];
        for (const item of input.items) {
          const info = await ctx.runtime.inspectTask(item.containerId).catch(() => undefined);
          if (info === undefined) continue;
          if (info === null) {
            events.push({ taskId: item.taskId, containerId: item.containerId, reason: 'gone' });
            continue;
          }
          if (!info.running) {
            events.push({ taskId: item.taskId, containerId: item.containerId, reason: 'exited', exitCode: info.exitCode });
            continue;
          }
          const timeoutS = item.spec.timeout_s;
          if (item.kind === 'batch' && timeoutS && Date.now() - item.startedAt > timeoutS * 1000) {
            events.push({ taskId: item.taskId, containerId: item.containerId, reason: 'timeout' });
            continue;
          }
          if (info.health === 'unhealthy') {
            events.push({ taskId: item.taskId, containerId: item.containerId, reason: 'unhealthy' });
            continue;
          }
          const check = item.spec.health_check;
          if (check?.type === 'http') {
            const hostPort = item.hostPorts?.[String(check.port)];
            const due = (lastCheck.get(item.taskId) ?? 0) + check.interval_s * 1000 <= Date.now();
            const started = Date.now() - item.startedAt >= check.start_period_s * 1000;
            if (hostPort && due && started) {
              lastCheck.set(item.taskId, Date.now());
              const healthy = await ctx.runtime.checkHttpHealth(hostPort, check.path, check.timeout_s * 1000);
              const count = healthy ? 0 : (failures.get(item.taskId) ?? 0) + 1;
              failures.set(item.taskId, count);
              if (count >= check.retries) {
                events.push({ taskId: item.taskId, containerId: item.containerId, reason: 'unhealthy' });
              }
            }
          }
        }
        if (events.length > 0) return events;
        context.heartbeat({ watching: input.items.length });
        await context.sleep(1000);
      }
      return [];
    },

    /** Stop and remove a container; a container already stopped or gone is fine. */
    async stopTask(input: { taskId: string; containerId: string }): Promise<StopResult> {
      const result = await ctx.runtime.stopAndRemove(input.containerId);
      log.info({ taskId: input.taskId, containerId: input.containerId, exitCode: result.exitCode }, 'container stopped and removed');
      // The log lines go into the workflow history and assignments.json, so secret values are masked.
      return { exitCode: result.exitCode ?? null, lastLog: result.lastLogs.map(hideSecrets) };
    },

    /** Record how a claim ended and give the task back, if the claim is still ours. */
    async finishTask(input: FinishInput): Promise<{ recorded: boolean }> {
      const outcome = await ctx.repo.edit(`${input.outcome} ${input.taskId} by ${ctx.nodeId}`, (snapshot) => {
        if (!snapshot.assignments.ok) throw snapshot.assignments.error;
        const entry = assignmentOf(snapshot.assignments.value, input.taskId);
        if (!entry || entry.node_id !== ctx.nodeId || entry.claim_token !== input.claimToken) {
          return { result: false };
        }
        const now = isoNow();
        const updated: Assignment = {
          ...entry,
          node_id: null,
          status: input.outcome,
          finished_at: now,
          task_heartbeat: now,
          container_id: null,
          spec_hash: input.specHash,
          last_node: ctx.nodeId,
        };
        if (input.exitCode !== undefined) updated.exit_code = input.exitCode;
        if (input.lastLog !== undefined) updated.last_log = input.lastLog.slice(-20).map(hideSecrets);
        if (input.error !== undefined) updated.last_error = hideSecrets(input.error);
        if (input.attempts !== undefined) updated.attempts = input.attempts;
        if (input.reschedules !== undefined) updated.reschedules = input.reschedules;
        updated.given_up = input.givenUp ?? false;
        updated.not_before = input.delayMs ? new Date(Date.now() + input.delayMs).toISOString() : null;
        const file = {
          ...snapshot.assignments.value,
          assignments: { ...snapshot.assignments.value.assignments, [input.taskId]: updated },
        };
        return { result: true, writes: { [ASSIGNMENTS_FILE]: file } };
      }, { crashTag: 'finish' });
      log.info({ taskId: input.taskId, outcome: input.outcome, recorded: outcome.result, exitCode: input.exitCode }, 'task finished');
      return { recorded: outcome.result };
    },

    /** Remove containers of this node that belong to no claim it holds now. */
    async reconcile(input: { owned: Array<{ taskId: string; epoch: number; claimToken: string }> }): Promise<string[]> {
      const removed: string[] = [];
      for (const container of await ctx.runtime.listManaged({ nodeId: ctx.nodeId })) {
        const keep = input.owned.some(
          (o) => o.taskId === container.taskId && o.epoch === container.epoch && o.claimToken === container.claimToken,
        );
        if (keep) continue;
        log.warn({ taskId: container.taskId, containerId: container.id, epoch: container.epoch }, 'removing container without a current claim');
        await ctx.runtime.stopAndRemove(container.id);
        removed.push(container.taskId);
      }
      return removed;
    },

    /** Mark this node stopped in the roster and tell the fence keeper to exit. */
    async leaveRoster(): Promise<void> {
      await ctx.repo.edit(`node ${ctx.nodeId} stopped`, (snapshot) => {
        if (!snapshot.roster.ok) return { result: undefined };
        return { result: undefined, writes: { [ROSTER_FILE]: rosterEntry(snapshot.roster.value, 'STOPPED', 0) } };
      });
      ctx.lease.markStopped();
    },
  };
}

export type NodeActivities = ReturnType<typeof activityFunctions>;
