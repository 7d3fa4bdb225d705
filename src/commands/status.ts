import Table from 'cli-table3';
import type { ControlSnapshot } from '../git/control-repo';
import { assignmentOf } from '../state/control-files';
import { formatTaskProblem } from '../state/errors';
import { timestampMs } from '../core/selection';

export interface StatusReport {
  commit: string;
  nodes: Array<{ id: string; state?: string; roles?: string[]; tasks?: number; lastSeenAgeS?: number; cpuLoad?: number; memoryPercent?: number }>;
  tasks: Array<{
    id: string;
    type?: string;
    kind?: string;
    priority?: number;
    owner?: string | null;
    status: string;
    epoch?: number;
    heartbeatAgeS?: number;
    exitCode?: number | null;
    lastError?: string | null;
  }>;
  problems: string[];
}

function ageSeconds(value: string | number | null | undefined, now: number): number | undefined {
  const ms = timestampMs(value);
  return ms === undefined ? undefined : Math.round((now - ms) / 1000);
}

/** Summarize a snapshot. Ages come from timestamps written by each node's own clock. */
export function buildStatus(snapshot: ControlSnapshot, now = Date.now()): StatusReport {
  const problems: string[] = [];
  for (const parsed of [snapshot.schedule, snapshot.roster, snapshot.assignments, snapshot.settings]) {
    if (!parsed.ok) problems.push(parsed.error.message);
  }
  if (snapshot.schedule.ok) problems.push(...snapshot.schedule.value.problems.map(formatTaskProblem));

  const nodes = snapshot.roster.ok
    ? snapshot.roster.value.nodes.map((n) => ({
        id: n.id,
        state: n.state,
        roles: n.roles,
        tasks: typeof n.task_count === 'number' ? n.task_count : undefined,
        lastSeenAgeS: ageSeconds(n.last_seen, now),
        cpuLoad: n.metrics?.cpu_load,
        memoryPercent: n.metrics?.memory_percent,
      }))
    : [];
  const assignments = snapshot.assignments.ok ? snapshot.assignments.value.assignments : {};
  const scheduled = snapshot.schedule.ok ? snapshot.schedule.value.tasks : [];
  const tasks: StatusReport['tasks'] = scheduled.map(({ task, spec }) => {
    const a = snapshot.assignments.ok ? assignmentOf(snapshot.assignments.value, task.id) : undefined;
    return {
      id: task.id,
      type: task.type,
      kind: spec.kind,
      priority: task.priority,
      owner: a?.node_id ?? null,
      status: a?.status ?? 'pending',
      epoch: a?.epoch,
      heartbeatAgeS: a?.node_id ? ageSeconds(a.task_heartbeat, now) : undefined,
      exitCode: a?.exit_code,
      lastError: a?.last_error,
    };
  });
  // Claims on tasks that are not (validly) in the schedule still show, since a
  // node may run them until the schedule is fixed.
  const listed = new Set(tasks.map((t) => t.id));
  for (const [id, a] of Object.entries(assignments)) {
    if (listed.has(id) || !a.node_id) continue;
    tasks.push({
      id,
      type: undefined,
      kind: undefined,
      priority: undefined,
      owner: a.node_id,
      status: `${a.status ?? 'claimed'} (not in valid schedule)`,
      epoch: a.epoch,
      heartbeatAgeS: ageSeconds(a.task_heartbeat, now),
      exitCode: a.exit_code,
      lastError: a.last_error,
    });
  }
  return { commit: snapshot.commit, nodes, tasks, problems };
}

function age(value: number | undefined): string {
  return value === undefined ? '-' : `${value}s`;
}

export function renderStatus(report: StatusReport): string {
  const nodeTable = new Table({ style: { head: [], border: [] }, head: ['node', 'state', 'tasks', 'last seen', 'cpu load', 'memory %', 'roles'] });
  for (const n of report.nodes) {
    nodeTable.push([n.id, n.state ?? '-', n.tasks ?? '-', age(n.lastSeenAgeS), n.cpuLoad ?? '-', n.memoryPercent ?? '-', (n.roles ?? []).join(',') || '-']);
  }
  const taskTable = new Table({ style: { head: [], border: [] }, head: ['task', 'kind', 'prio', 'owner', 'status', 'epoch', 'heartbeat', 'exit', 'last error'] });
  for (const t of report.tasks) {
    const error = t.lastError ? (t.lastError.length > 60 ? `${t.lastError.slice(0, 57)}...` : t.lastError) : '';
    taskTable.push([t.id, t.kind ?? '-', t.priority ?? '-', t.owner ?? '-', t.status, t.epoch ?? '-', age(t.heartbeatAgeS), t.exitCode ?? '', error]);
  }
  const lines = [`control repo at ${report.commit.slice(0, 12)}`, 'Nodes', nodeTable.toString(), 'Tasks', taskTable.toString()];
  if (report.problems.length > 0) {
    lines.push('Problems');
    for (const p of report.problems) lines.push(`  - ${p}`);
  }
  return lines.join('\n');
}
