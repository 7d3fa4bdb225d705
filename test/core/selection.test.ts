/**
 * Task selection: which tasks a node may claim and in what order. Tasks come
 * from a real schedule through viewSchedule, and heartbeat ages come from a
 * HeartbeatObserver driven by a fake clock, as the claim activity uses them.
 */
import { HeartbeatObserver } from '../../src/core/observer';
import { availability, candidates, SelectionInput } from '../../src/core/selection';
import { viewSchedule, ScheduledTask } from '../../src/state/control-files';
import type { Assignment, AssignmentsFile } from '../../src/state/schemas';
import { specHashOf } from '../../activities';

const IMAGE = 'gitfleet/busybox:local';
const EXPIRY_MS = 10_000;
const NOW = Date.parse('2030-01-01T00:00:00Z');

function schedule(tasks: Array<Record<string, unknown>>): ScheduledTask[] {
  const view = viewSchedule({ tasks: tasks.map((t) => ({ type: 't', image: IMAGE, ...t })) });
  expect(view.problems).toEqual([]);
  return view.tasks;
}

class FakeClock {
  ms = 1_000_000;
  now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

interface Setup {
  tasks: ScheduledTask[];
  assignments?: Record<string, Assignment>;
  nodeId?: string;
  roles?: string[];
  owned?: string[];
  observer?: HeartbeatObserver;
  nowMs?: number;
}

function input(setup: Setup): SelectionInput {
  const assignments: AssignmentsFile = { assignments: setup.assignments ?? {} };
  const observer = setup.observer ?? new HeartbeatObserver(() => 0);
  return {
    nodeId: setup.nodeId ?? 'node-a',
    roles: setup.roles ?? [],
    tasks: setup.tasks,
    assignments,
    unchangedForMs: (id) => observer.unchangedForMs(id),
    expiryMs: EXPIRY_MS,
    owned: new Set(setup.owned ?? []),
    nowMs: setup.nowMs ?? NOW,
    specHash: specHashOf,
  };
}

function ids(list: ScheduledTask[]): string[] {
  return list.map((t) => t.task.id);
}

function held(nodeId: string, seq: number): Assignment {
  return { node_id: nodeId, status: 'running', epoch: 1, claim_token: `tok-${nodeId}`, task_heartbeat: '2030-01-01T00:00:00Z', heartbeat_seq: seq };
}

describe('candidate order', () => {
  test('lowest priority number first, then id', () => {
    const tasks = schedule([
      { id: 'c', priority: 5 },
      { id: 'b', priority: 1 },
      { id: 'z', priority: 0 },
      { id: 'a', priority: 5 },
      { id: 'm', priority: -3 },
    ]);
    expect(ids(candidates(input({ tasks })))).toEqual(['m', 'z', 'b', 'a', 'c']);
  });

  test('tasks running here are not candidates', () => {
    const tasks = schedule([
      { id: 'a', priority: 1 },
      { id: 'b', priority: 2 },
    ]);
    expect(ids(candidates(input({ tasks, owned: ['a'] })))).toEqual(['b']);
    expect(availability(input({ tasks, owned: ['a'] }), tasks[0])).toEqual({ claimable: false, reason: 'already running here' });
  });
});

describe('required_role', () => {
  const tasks = schedule([
    { id: 'gpu-job', priority: 1, required_role: 'gpu' },
    { id: 'any-job', priority: 2 },
  ]);

  test('a node without the role skips the task', () => {
    expect(ids(candidates(input({ tasks, roles: ['cpu'] })))).toEqual(['any-job']);
    const result = availability(input({ tasks, roles: ['cpu'] }), tasks[0]);
    expect(result.claimable).toBe(false);
    expect(result.reason).toContain('"gpu"');
  });

  test('a node with the role takes it first', () => {
    expect(ids(candidates(input({ tasks, roles: ['cpu', 'gpu'] })))).toEqual(['gpu-job', 'any-job']);
  });
});

describe('orphaned claims are judged by the observer clock', () => {
  const tasks = schedule([{ id: 'svc', priority: 1 }]);

  test('a claim whose heartbeat stays unchanged becomes claimable only after the expiry', () => {
    const clock = new FakeClock();
    const observer = new HeartbeatObserver(clock.now);
    const assignments = { svc: held('node-b', 1) };
    observer.observe({ assignments });

    clock.advance(EXPIRY_MS - 1);
    observer.observe({ assignments });
    expect(availability(input({ tasks, assignments, observer }), tasks[0])).toEqual({
      claimable: false,
      reason: 'held by node-b',
    });

    clock.advance(1);
    expect(availability(input({ tasks, assignments, observer }), tasks[0])).toEqual({ claimable: true, reason: 'orphaned' });
  });

  test('a changed heartbeat value restarts the count', () => {
    const clock = new FakeClock();
    const observer = new HeartbeatObserver(clock.now);
    observer.observe({ assignments: { svc: held('node-b', 1) } });
    clock.advance(EXPIRY_MS - 100);
    const renewed = { svc: held('node-b', 2) };
    observer.observe({ assignments: renewed });
    clock.advance(EXPIRY_MS - 100);
    expect(availability(input({ tasks, assignments: renewed, observer }), tasks[0]).claimable).toBe(false);
    clock.advance(100);
    expect(availability(input({ tasks, assignments: renewed, observer }), tasks[0]).claimable).toBe(true);
  });

  test('old wall-clock timestamps alone do not make a claim orphaned', () => {
    const clock = new FakeClock();
    const observer = new HeartbeatObserver(clock.now);
    const ancient = { svc: { ...held('node-b', 1), task_heartbeat: '2000-01-01T00:00:00Z', claimed_at: '2000-01-01T00:00:00Z' } };
    observer.observe({ assignments: ancient });
    expect(availability(input({ tasks, assignments: ancient, observer }), tasks[0]).claimable).toBe(false);
  });

  test('a task the observer never saw counts as fresh', () => {
    const observer = new HeartbeatObserver(new FakeClock().now);
    const assignments = { svc: held('node-b', 1) };
    expect(availability(input({ tasks, assignments, observer }), tasks[0]).claimable).toBe(false);
  });

  test("this node's own stale claim is reported as own-stale", () => {
    const clock = new FakeClock();
    const observer = new HeartbeatObserver(clock.now);
    const assignments = { svc: held('node-a', 7) };
    observer.observe({ assignments });
    expect(availability(input({ tasks, assignments, observer }), tasks[0]).claimable).toBe(false);
    clock.advance(EXPIRY_MS);
    expect(availability(input({ tasks, assignments, observer }), tasks[0])).toEqual({ claimable: true, reason: 'own-stale' });
  });
});

describe('finished tasks', () => {
  const tasks = schedule([{ id: 'job', priority: 1, kind: 'batch', command: ['true'] }]);
  const hash = specHashOf(tasks[0]);

  test('a succeeded batch task is never claimed again', () => {
    for (const spec_hash of [hash, 'another-hash', undefined]) {
      const assignments = { job: { status: 'succeeded', node_id: null, exit_code: 0, spec_hash } };
      const result = availability(input({ tasks, assignments, nowMs: NOW + 86_400_000 }), tasks[0]);
      expect(result).toEqual({ claimable: false, reason: 'batch task succeeded' });
    }
  });

  test('a failed task waits for not_before, then is retried', () => {
    const notBefore = new Date(NOW + 5_000).toISOString();
    const assignments = { job: { status: 'failed', node_id: null, spec_hash: hash, not_before: notBefore, given_up: false } };
    expect(availability(input({ tasks, assignments, nowMs: NOW + 4_999 }), tasks[0])).toEqual({
      claimable: false,
      reason: 'waiting for retry delay',
    });
    expect(availability(input({ tasks, assignments, nowMs: NOW + 5_000 }), tasks[0])).toEqual({ claimable: true, reason: 'retry' });
  });

  test('a failed task that was given up stays put until its entry changes', () => {
    const assignments = { job: { status: 'failed', node_id: null, spec_hash: hash, given_up: true, not_before: null } };
    expect(availability(input({ tasks, assignments, nowMs: NOW + 86_400_000 }), tasks[0]).claimable).toBe(false);
    const changed = schedule([{ id: 'job', priority: 1, kind: 'batch', command: ['true', 'again'] }]);
    expect(availability(input({ tasks: changed, assignments }), changed[0])).toEqual({ claimable: true, reason: 'retry' });
  });

  test('a rejected task stays rejected until its spec hash changes', () => {
    const assignments = { job: { status: 'rejected', node_id: null, spec_hash: hash, last_error: 'policy' } };
    const result = availability(input({ tasks, assignments, nowMs: NOW + 86_400_000 }), tasks[0]);
    expect(result.claimable).toBe(false);
    expect(result.reason).toMatch(/^rejected; change the task entry/);

    const edited = schedule([{ id: 'job', priority: 1, kind: 'batch', command: ['true'], image: 'gitfleet/busybox:other' }]);
    expect(specHashOf(edited[0])).not.toBe(hash);
    expect(availability(input({ tasks: edited, assignments }), edited[0])).toEqual({ claimable: true, reason: 'retry' });
  });

  test('a released task is free, after its reschedule delay', () => {
    const assignments = { job: { status: 'released', node_id: null, not_before: new Date(NOW + 1_000).toISOString() } };
    expect(availability(input({ tasks, assignments, nowMs: NOW }), tasks[0]).claimable).toBe(false);
    expect(availability(input({ tasks, assignments, nowMs: NOW + 1_000 }), tasks[0])).toEqual({ claimable: true, reason: 'free' });
  });
});
