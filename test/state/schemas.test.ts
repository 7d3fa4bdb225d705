/**
 * Parsing and validating the control files: valid files, unknown fields kept
 * at every level, one bad task skipped while the others stay, and file-level
 * errors that name the place to fix.
 */
import {
  parseAssignments,
  parseRoster,
  parseSchedule,
  parseSettings,
  serialize,
} from '../../src/state/control-files';
import { ControlFileError, formatTaskProblem } from '../../src/state/errors';

const IMAGE = 'gitfleet/busybox:local';

function bytes(value: unknown): Buffer {
  return Buffer.from(typeof value === 'string' ? value : serialize(value));
}

function ok<T>(parsed: { ok: true; value: T } | { ok: false; error: ControlFileError }): T {
  if (!parsed.ok) throw new Error(`expected a valid file, got: ${parsed.error.message}`);
  return parsed.value;
}

function failure(parsed: { ok: boolean; error?: ControlFileError }): ControlFileError {
  expect(parsed.ok).toBe(false);
  expect(parsed.error).toBeInstanceOf(ControlFileError);
  return parsed.error!;
}

describe('valid files', () => {
  test('schedule with a type table and a task of its own', () => {
    const view = ok(
      parseSchedule(
        bytes({
          types: { web: { image: IMAGE, command: ['httpd', '-f'], kind: 'service', env: { A: '1' } } },
          tasks: [
            { id: 'web-1', type: 'web', priority: 1, env: { B: '2' } },
            { id: 'job-1', type: 'once', priority: 2, image: IMAGE, kind: 'batch', command: ['true'], max_retries: 0 },
            { id: 'plain', type: 'x', priority: 3, image: IMAGE },
          ],
        }),
      ),
    );
    expect(view.problems).toEqual([]);
    expect(view.tasks.map((t) => [t.task.id, t.spec.kind])).toEqual([
      ['web-1', 'service'],
      ['job-1', 'batch'],
      ['plain', 'service'],
    ]);
    expect(view.tasks[0].spec.command).toEqual(['httpd', '-f']);
    expect(view.tasks[0].spec.env).toEqual({ A: '1', B: '2' });
    expect(view.tasks[1].spec.max_retries).toBe(0);
  });

  test('roster, assignments and settings', () => {
    const roster = ok(parseRoster(bytes({ nodes: [{ id: 'n1', last_seen: '2030-01-01T00:00:00Z', roles: ['gpu'], heartbeat_seq: 3 }] })));
    expect(roster.nodes[0].roles).toEqual(['gpu']);
    const assignments = ok(parseAssignments(bytes({ assignments: { t: { node_id: 'n1', status: 'running', epoch: 2 } } })));
    expect(assignments.assignments.t.epoch).toBe(2);
    const settings = ok(parseSettings(bytes({ settings: { task_expiry_s: 40 } })));
    expect(settings.task_expiry_s).toBe(40);
    expect(settings.task_heartbeat_s).toBe(10);
  });

  test('unsafe settings are rejected', () => {
    const parsed = parseSettings(bytes({ settings: { task_expiry_s: 5, task_heartbeat_s: 10 } }));
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.error.message).toContain('fleet.json at settings');
    expect(parsed.error.message).toContain('task_expiry_s (5) must be at least 3 x task_heartbeat_s (10)');
  });

  test('unknown setting names are rejected', () => {
    const parsed = parseSettings(bytes({ settings: { task_expiry_sec: 60 } }));
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.error.message).toContain('unknown setting "task_expiry_sec"');
    expect(parsed.error.message).toContain('task_expiry_s');
  });

  test('a missing task field is named', () => {
    const view = ok(parseSchedule(bytes({ tasks: [{ id: 'a', type: 't', image: IMAGE }] })));
    expect(view.tasks).toEqual([]);
    expect(view.problems).toHaveLength(1);
    expect(view.problems[0].location).toBe('at tasks[0].priority');
    expect(view.problems[0].problem).toBe('required field "priority" is missing');
  });

  test('a missing fleet.json means the defaults', () => {
    const settings = ok(parseSettings(undefined));
    expect(settings).toMatchObject({ task_expiry_s: 45, task_heartbeat_s: 10, roster_heartbeat_s: 30 });
  });
});

describe('unknown fields are kept', () => {
  test('at the top level and in tasks of schedule.json', () => {
    const view = ok(
      parseSchedule(bytes({ owner_team: 'infra', tasks: [{ id: 'a', type: 't', priority: 1, image: IMAGE, ticket: 'OPS-1', nested: { x: [1] } }] })),
    );
    expect(view.file).toMatchObject({ owner_team: 'infra' });
    expect(view.tasks[0].task).toMatchObject({ ticket: 'OPS-1', nested: { x: [1] } });
    // The raw task entry written back keeps the field too.
    expect(JSON.parse(serialize(view.file)).tasks[0].ticket).toBe('OPS-1');
  });

  test('at the top level and in nodes of roster.json', () => {
    const roster = ok(parseRoster(bytes({ comment: 'hand edited', nodes: [{ id: 'n1', rack: 'r7', metrics: { cpu_load: 1, gpu_temp: 60 } }] })));
    expect(roster).toMatchObject({ comment: 'hand edited' });
    expect(roster.nodes[0]).toMatchObject({ rack: 'r7', metrics: { gpu_temp: 60 } });
    expect(JSON.parse(serialize(roster))).toMatchObject({ comment: 'hand edited', nodes: [{ rack: 'r7' }] });
  });

  test('at the top level and in entries of assignments.json', () => {
    const file = ok(parseAssignments(bytes({ schema_rev: 2, assignments: { t: { node_id: 'n1', status: 'running', note: 'pinned', counter: 4 } } })));
    expect(file).toMatchObject({ schema_rev: 2 });
    expect(file.assignments.t).toMatchObject({ note: 'pinned', counter: 4 });
    expect(JSON.parse(serialize(file)).assignments.t.note).toBe('pinned');
  });
});

describe('bad task entries', () => {
  test('a bad task is skipped with a problem naming tasks[i].field; the others stay', () => {
    const view = ok(
      parseSchedule(
        bytes({
          tasks: [
            { id: 'good-1', type: 't', priority: 1, image: IMAGE },
            { id: 'bad', type: 't', priority: 'high', image: IMAGE },
            { id: 'good-2', type: 't', priority: 2, image: IMAGE },
          ],
        }),
      ),
    );
    expect(view.tasks.map((t) => t.task.id)).toEqual(['good-1', 'good-2']);
    expect(view.problems).toHaveLength(1);
    expect(view.problems[0]).toMatchObject({ index: 1, taskId: 'bad', location: 'at tasks[1].priority' });
    expect(view.problems[0].problem).toContain('"high"');
    expect(formatTaskProblem(view.problems[0])).toContain('tasks[1].priority');
  });

  test('a bad nested field is named with its full path', () => {
    const view = ok(
      parseSchedule(
        bytes({
          tasks: [
            { id: 'a', type: 't', priority: 1, image: IMAGE, ports: [{ container: 80 }, { container: 70000 }] },
            { id: 'b', type: 't', priority: 1, image: IMAGE, env: { 'BAD-NAME': 'x' } },
          ],
        }),
      ),
    );
    expect(view.tasks).toEqual([]);
    expect(view.problems.map((p) => p.location)).toEqual(['at tasks[0].ports[1].container', 'at tasks[1].env["BAD-NAME"]']);
  });

  test('duplicate ids: none of the entries runs', () => {
    const view = ok(
      parseSchedule(
        bytes({
          tasks: [
            { id: 'dup', type: 't', priority: 1, image: IMAGE },
            { id: 'solo', type: 't', priority: 1, image: IMAGE },
            { id: 'dup', type: 't', priority: 2, image: IMAGE },
          ],
        }),
      ),
    );
    expect(view.tasks.map((t) => t.task.id)).toEqual(['solo']);
    expect(view.problems).toHaveLength(1);
    expect(view.problems[0].problem).toContain('duplicate task id "dup"');
    expect(view.problems[0].location).toBe('at tasks[0], tasks[2]');
  });

  test('an unknown type without an image is skipped', () => {
    const view = ok(
      parseSchedule(
        bytes({
          types: { web: { image: IMAGE } },
          tasks: [
            { id: 'a', type: 'web', priority: 1 },
            { id: 'b', type: 'wbe', priority: 1 },
          ],
        }),
      ),
    );
    expect(view.tasks.map((t) => t.task.id)).toEqual(['a']);
    expect(view.problems[0]).toMatchObject({ taskId: 'b', location: 'at tasks[1].type' });
    expect(view.problems[0].problem).toContain('unknown type "wbe"');
  });

  test.each(['Busybox:Latest', 'busybox:', 'bad image', 'registry:5000/', 'a//b'])('invalid image reference %j is skipped', (image) => {
    const view = ok(
      parseSchedule(
        bytes({
          tasks: [
            { id: 'ok', type: 't', priority: 1, image: IMAGE },
            { id: 'bad', type: 't', priority: 1, image },
          ],
        }),
      ),
    );
    expect(view.tasks.map((t) => t.task.id)).toEqual(['ok']);
    expect(view.problems).toHaveLength(1);
    expect(view.problems[0].location).toBe('at tasks[1].image');
    expect(view.problems[0].problem).toContain('invalid image reference');
  });

  test.each(['busybox', 'busybox:1.36', 'registry.example:5000/team/app:v1', `app@sha256:${'a'.repeat(64)}`])(
    'valid image reference %j is accepted',
    (image) => {
      const view = ok(parseSchedule(bytes({ tasks: [{ id: 'a', type: 't', priority: 1, image }] })));
      expect(view.problems).toEqual([]);
    },
  );

  test('an entry that is not an object is skipped', () => {
    const view = ok(parseSchedule(bytes({ tasks: [42, { id: 'a', type: 't', priority: 1, image: IMAGE }] })));
    expect(view.tasks.map((t) => t.task.id)).toEqual(['a']);
    expect(view.problems[0].location).toBe('at tasks[0]');
  });
});

describe('file-level errors', () => {
  test('invalid JSON names the line and column', () => {
    const text = '{\n  "tasks": [\n    {"id": "a",, "type": "t"}\n  ]\n}\n';
    const error = failure(parseSchedule(Buffer.from(text)));
    expect(error.file).toBe('schedule.json');
    expect(error.location).toBe('line 3 column 16');
    expect(error.message).toMatch(/^schedule\.json line 3 column 16: invalid JSON/);
  });

  test('invalid JSON on the first line', () => {
    const error = failure(parseAssignments(Buffer.from('{"assignments": {]}')));
    expect(error.location).toMatch(/^line 1 column \d+$/);
  });

  test.each([
    ['an empty file', ''],
    ['a file of whitespace', '  \n\t\n'],
  ])('%s is reported as empty', (_what, text) => {
    const error = failure(parseRoster(Buffer.from(text)));
    expect(error.file).toBe('roster.json');
    expect(error.problem).toBe('file is empty');
  });

  test.each([
    ['schedule.json', () => parseSchedule(undefined)],
    ['roster.json', () => parseRoster(undefined)],
    ['assignments.json', () => parseAssignments(undefined)],
  ])('a missing %s is reported with a fix', (file, parse) => {
    const error = failure(parse());
    expect(error.file).toBe(file);
    expect(error.problem).toBe('file is missing from the control repo');
    expect(error.message).toContain('gitfleet init');
  });

  test('a wrong top-level shape names the field', () => {
    expect(failure(parseSchedule(bytes({ tasks: {} }))).location).toBe('at tasks');
    expect(failure(parseRoster(bytes({ nodes: [{ id: '' }] }))).location).toBe('at nodes[0].id');
    expect(failure(parseAssignments(bytes({ assignments: { t: { epoch: -1 } } }))).location).toBe('at assignments.t.epoch');
    expect(failure(parseSettings(bytes({ settings: { task_expiry_s: 0 } }))).location).toBe('at settings.task_expiry_s');
  });
});
