/**
 * Unknown fields survive a read and a rewrite: random extra fields anywhere in the control files
 * come back equal after a ControlRepo.edit, and a control repo written in the Python tool's style
 * reads without problems and keeps every field.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { ASSIGNMENTS_FILE, ROSTER_FILE, SCHEDULE_FILE } from '../../src/state/control-files';
import { addTask } from '../../src/commands/tasks';
import { controlRepo, makeBareRepo, remoteFile, tempDir } from './helpers';

const root = tempDir('gitfleet-compat-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const KNOWN = new Set([
  'id', 'type', 'priority', 'image', 'tasks', 'types', 'nodes', 'assignments', 'settings', 'status',
  'node_id', 'epoch', 'config', 'env', 'command', 'secrets', 'ports', 'mounts', 'resources',
  'metrics', 'roles', 'state', 'last_seen', 'started_at', 'heartbeat_seq', 'claimed_at',
  'task_heartbeat', 'claim_token', 'container_id', 'exit_code', 'finished_at', 'last_error',
  'last_log', 'attempts', 'not_before', 'spec_hash', 'given_up', 'reschedules', 'required_role',
  'kind', 'build', 'entrypoint', 'health_check', 'restart_policy', 'max_retries', 'timeout_s',
  'privileged', 'network_mode', 'cap_add', 'version', 'task_count', 'cpu_load', 'memory_percent',
  'policy', 'max_restarts', 'backoff_s', 'max_backoff_s', 'context', 'dockerfile', 'memory_mb', 'cpus',
  'last_node',
]);
// "__proto__" is rejected on read (see bad-files.test.ts), and known names would change meaning.
const extraKey = fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !KNOWN.has(k) && k !== '__proto__');
const jsonValue = fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
const extras = fc.dictionary(extraKey, jsonValue, { maxKeys: 3 }).map((d) => JSON.parse(JSON.stringify(d)) as Record<string, unknown>);

let repoCount = 0;

test('random extra fields survive an edit', async () => {
  await fc.assert(
    fc.asyncProperty(extras, extras, extras, extras, extras, extras, async (top, task, config, node, assignment, nodeMetrics) => {
      const files = {
        [SCHEDULE_FILE]: {
          ...top,
          tasks: [
            { ...task, id: 'web', type: 'default', priority: 1, image: 'gitfleet/busybox:local', config: { ...config, depth: { ...config } } },
            { id: 'other', type: 'default', priority: 2, image: 'gitfleet/busybox:local' },
          ],
          types: { default: { ...task, image: 'gitfleet/busybox:local', restart_policy: { ...config } } },
        },
        [ROSTER_FILE]: { ...top, nodes: [{ ...node, id: 'n1', metrics: { ...nodeMetrics, cpu_load: 0.5 } }] },
        [ASSIGNMENTS_FILE]: {
          ...top,
          assignments: {
            web: { ...assignment, node_id: 'n1', status: 'running', epoch: 3 },
            other: { ...assignment, node_id: null, status: 'released' },
          },
        },
      };
      const bare = makeBareRepo(root, files, `prop-${repoCount++}.git`);
      const repo = controlRepo(bare, root);
      await repo.edit('release web', (snapshot) => {
        if (!snapshot.assignments.ok || !snapshot.roster.ok || !snapshot.schedule.ok) throw new Error('control files did not parse');
        const current = snapshot.assignments.value;
        return {
          result: undefined,
          writes: {
            [ASSIGNMENTS_FILE]: { ...current, assignments: { ...current.assignments, web: { ...current.assignments.web, status: 'released', node_id: null } } },
            [ROSTER_FILE]: snapshot.roster.value,
            [SCHEDULE_FILE]: snapshot.schedule.value.file,
          },
        };
      });
      const expectedAssignments = JSON.parse(JSON.stringify(files[ASSIGNMENTS_FILE]));
      expectedAssignments.assignments.web = { ...expectedAssignments.assignments.web, status: 'released', node_id: null };
      expect(JSON.parse(remoteFile(bare, ASSIGNMENTS_FILE))).toEqual(expectedAssignments);
      expect(JSON.parse(remoteFile(bare, ROSTER_FILE))).toEqual(files[ROSTER_FILE]);
      expect(JSON.parse(remoteFile(bare, SCHEDULE_FILE))).toEqual(files[SCHEDULE_FILE]);
    }),
    // Each run pushes to a real repo, so shrinking a failure would outlast the test timeout;
    // the first counterexample is reported as found.
    { numRuns: 12, endOnFailure: true },
  );
}, 300_000);

// A control repo as the Python tool writes it: epoch-float timestamps, task "config" objects,
// required_role, lease_expires_at and top-level comment and schema_version fields.
const PYTHON_FILES = {
  [SCHEDULE_FILE]: {
    comment: 'managed by fleetctl.py',
    schema_version: 2,
    tasks: [
      { id: 'ingest', type: 'worker', priority: 10, required_role: 'gpu', config: { batch_size: 64, sources: ['a', 'b'], retry: { max: 3 } } },
      { id: 'report', type: 'worker', priority: 20, config: { cron: '0 * * * *' }, owner_team: 'data' },
    ],
    types: { worker: { image: 'gitfleet/busybox:local', command: ['sleep', '60'], python_entry: 'jobs.worker:main' } },
  },
  [ROSTER_FILE]: {
    comment: 'nodes heartbeat here',
    schema_version: 2,
    nodes: [
      { id: 'py-node-1', started_at: 1718000000.25, last_seen: 1718000123.5, roles: ['gpu'], metrics: { cpu_load: 0.75, memory_percent: 41.2, gpu_temp_c: 61 }, hostname: 'box1' },
    ],
  },
  [ASSIGNMENTS_FILE]: {
    comment: 'do not edit by hand',
    schema_version: 2,
    assignments: {
      ingest: { node_id: 'py-node-1', claimed_at: 1718000100.125, task_heartbeat: 1718000120.875, lease_expires_at: 1718000165.875, status: 'running', pid: 4242 },
      report: { node_id: null, status: 'idle', lease_expires_at: null },
    },
  },
};

test('Python tool repo reads without problems', async () => {
  const bare = makeBareRepo(root, PYTHON_FILES, 'python.git');
  const snapshot = await controlRepo(bare, root).snapshot();
  expect(snapshot.schedule.ok && snapshot.schedule.value.problems).toEqual([]);
  expect(snapshot.roster.ok).toBe(true);
  expect(snapshot.assignments.ok).toBe(true);
  expect(snapshot.settings.ok).toBe(true);
  expect(snapshot.schedule.ok && snapshot.schedule.value.tasks.map((t) => t.task.id)).toEqual(['ingest', 'report']);
});

test('Python tool repo keeps every field on rewrite', async () => {
  const bare = makeBareRepo(root, PYTHON_FILES, 'python-rewrite.git');
  const repo = controlRepo(bare, root);
  await repo.edit('claim report', (snapshot) => {
    if (!snapshot.assignments.ok || !snapshot.roster.ok) throw new Error('control files did not parse');
    const file = snapshot.assignments.value;
    return {
      result: undefined,
      writes: {
        [ASSIGNMENTS_FILE]: { ...file, assignments: { ...file.assignments, report: { ...file.assignments.report, node_id: 'ts-node', status: 'claimed' } } },
        [ROSTER_FILE]: snapshot.roster.value,
      },
    };
  });
  await addTask(repo, { id: 'extra', type: 'worker', priority: 30 });

  const assignments = JSON.parse(remoteFile(bare, ASSIGNMENTS_FILE));
  const expected = JSON.parse(JSON.stringify(PYTHON_FILES[ASSIGNMENTS_FILE]));
  Object.assign(expected.assignments.report, { node_id: 'ts-node', status: 'claimed' });
  expect(assignments).toEqual(expected);
  expect(JSON.parse(remoteFile(bare, ROSTER_FILE))).toEqual(PYTHON_FILES[ROSTER_FILE]);
  const schedule = JSON.parse(remoteFile(bare, SCHEDULE_FILE));
  expect(schedule).toEqual({
    ...PYTHON_FILES[SCHEDULE_FILE],
    tasks: [...PYTHON_FILES[SCHEDULE_FILE].tasks, { id: 'extra', type: 'worker', priority: 30 }],
  });
});
