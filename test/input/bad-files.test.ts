/**
 * Bad control files: every parse function returns a ControlFileError that names the file, the
 * place, the value and the fix; a bad task is skipped while the others stay; an edit that aborts
 * on a bad file leaves the remote alone; `gitfleet status` reports problems and git failures.
 */
import * as fs from 'node:fs';
import {
  parseAssignments,
  parseRoster,
  parseSchedule,
  Parsed,
} from '../../src/state/control-files';
import { ControlFileError, formatTaskProblem } from '../../src/state/errors';
import { MAX_FILE_BYTES } from '../../src/state/parse';
import { candidates } from '../../src/core/selection';
import { GitCommandError } from '../../src/git/errors';
import { controlRepo, GOOD_FILES, makeBareRepo, remoteFile, remoteHead, runCli, tempDir } from './helpers';

const root = tempDir('gitfleet-badfiles-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

type Parser = (bytes: Buffer | undefined) => Parsed<unknown>;

const FILES: Array<{ file: string; parse: Parser; key: string; example: string }> = [
  { file: 'schedule.json', parse: parseSchedule, key: 'tasks', example: '{"tasks": []}' },
  { file: 'roster.json', parse: parseRoster, key: 'nodes', example: '{"nodes": []}' },
  { file: 'assignments.json', parse: parseAssignments, key: 'assignments', example: '{"assignments": {}}' },
];

function errorOf(result: Parsed<unknown>): ControlFileError {
  if (result.ok) throw new Error('expected a ControlFileError, but the file parsed');
  expect(result.error).toBeInstanceOf(ControlFileError);
  return result.error;
}

describe.each(FILES)('$file', ({ file, parse, key, example }) => {
  test('invalid JSON names line, column and text', () => {
    const error = errorOf(parse(Buffer.from(`{\n  "${key}": [1,, 2]\n}\n`)));
    expect(error.file).toBe(file);
    expect(error.location).toBe(`line 2 column ${key.length + 10}`);
    expect(error.problem).toMatch(/^invalid JSON: /);
    expect(error.problem).toContain('(near ", 2]');
    expect(error.message).toContain('gitfleet validate');
  });

  test('syntax error without position in the engine message', () => {
    // Node 20 leaves the position out of "Unexpected token" messages.
    const error = errorOf(parse(Buffer.from(`{"${key}": x}`)));
    expect(error.location).toBe(`line 1 column ${key.length + 6}`);
    expect(error.problem).toContain('"x}"');
  });

  test('wrong shape names JSON path and value', () => {
    const error = errorOf(parse(Buffer.from(`{"${key}": "yes"}`)));
    expect(error.location).toBe(`at ${key}`);
    expect(error.problem).toContain('(found "yes")');
    expect(error.fix).toMatch(/correct the value/);
  });

  test('top-level array is the wrong shape', () => {
    const error = errorOf(parse(Buffer.from('[]')));
    expect(error.location).toBe('at (top level)');
    expect(error.problem).toContain('expected object');
    expect(error.problem).toContain('(found [])');
  });

  test('missing file names the fix', () => {
    const error = errorOf(parse(undefined));
    expect(error.message).toBe(`${file}: file is missing from the control repo; create it with \`gitfleet init\` or push ${example}`);
  });

  test('empty file names the smallest content', () => {
    for (const text of ['', '  \n\t\n']) {
      const error = errorOf(parse(Buffer.from(text)));
      expect(error.message).toBe(`${file}: file is empty; write at least ${example} and push again`);
    }
  });

  test('file over 8 MiB is rejected unread', () => {
    const bytes = Buffer.alloc(MAX_FILE_BYTES + 1, 0x20);
    const error = errorOf(parse(bytes));
    expect(error.problem).toBe(`file is ${MAX_FILE_BYTES + 1} bytes, larger than the 8 MiB (${MAX_FILE_BYTES} bytes) limit`);
    expect(error.fix).toMatch(/shrink the file/);
  });

  test('file of exactly 8 MiB is read', () => {
    const body = `{"${key}": ${key === 'assignments' ? '{}' : '[]'}}`;
    const bytes = Buffer.alloc(MAX_FILE_BYTES, 0x20);
    bytes.write(body, 0);
    expect(parse(bytes).ok).toBe(true);
  });

  test('invalid UTF-8 names line, column and byte', () => {
    const bytes = Buffer.concat([Buffer.from(`{\n  "${key}": "ab`), Buffer.from([0xff]), Buffer.from('"\n}')]);
    const error = errorOf(parse(bytes));
    const offset = `{\n  "${key}": "ab`.length;
    expect(error.location).toBe(`line 2 column ${offset - 1} (byte ${offset})`);
    expect(error.problem).toBe('invalid UTF-8');
    expect(error.fix).toMatch(/save the file as UTF-8/);
  });

  test('"__proto__" key is rejected with its path', () => {
    const inner = key === 'tasks' ? '[]' : key === 'nodes' ? '[]' : '{}';
    const error = errorOf(parse(Buffer.from(`{"${key}": ${inner}, "meta": {"__proto__": {"polluted": true}}}`)));
    expect(error.location).toBe('at meta.__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('schedule.json task entries', () => {
  const image = 'gitfleet/busybox:local';
  const schedule = {
    tasks: [
      { id: 'dup', type: 'default', priority: 1, image },
      { id: 'dup', type: 'default', priority: 2, image },
      { id: 'no-type', type: 'nope', priority: 1 },
      { id: 'bad-image', type: 'default', priority: 1, image: 'Bad Image!' },
      { id: 'early', type: 'default', priority: -5, image },
      { id: 'word-prio', type: 'default', priority: 'high', image },
      { id: 'ok', type: 'default', priority: 3, image },
      { id: 'bad"id;$(x)', type: 'default', priority: 1, image },
    ],
  };
  const parsed = parseSchedule(Buffer.from(JSON.stringify(schedule)));
  if (!parsed.ok) throw parsed.error;
  const view = parsed.value;
  const problem = (taskIndex: number) => {
    const found = view.problems.find((p) => p.index === taskIndex);
    if (!found) throw new Error(`no problem recorded for tasks[${taskIndex}]`);
    return formatTaskProblem(found);
  };

  test('valid tasks still run', () => {
    expect(view.tasks.map((t) => t.task.id).sort()).toEqual(['early', 'ok']);
  });

  test('duplicate ids skip every copy', () => {
    expect(problem(1)).toBe(
      'schedule.json at tasks[0], tasks[1] (task "dup"): duplicate task id "dup"; none of these entries runs; give each task a unique id and push again',
    );
  });

  test('unknown type names the type', () => {
    expect(problem(2)).toContain('at tasks[2].type (task "no-type"): unknown type "nope"');
    expect(problem(2)).toContain('give the task an "image"');
  });

  test('invalid image reference names the value', () => {
    expect(problem(3)).toContain('at tasks[3].image (task "bad-image"): invalid image reference "Bad Image!"');
    expect(problem(3)).toContain('use a reference such as "name:tag"');
  });

  test('negative priority is allowed and runs first', () => {
    // Lower numbers run first, so a negative priority is a valid way to jump the queue.
    const order = candidates({
      nodeId: 'n',
      roles: [],
      tasks: view.tasks,
      assignments: { assignments: {} },
      unchangedForMs: () => 0,
      expiryMs: 1000,
      owned: new Set(),
      nowMs: Date.now(),
      specHash: () => 'h',
    }).map((t) => t.task.id);
    expect(order).toEqual(['early', 'ok']);
  });

  test('non-numeric priority names path and value', () => {
    expect(problem(5)).toBe(
      'schedule.json at tasks[5].priority (task "word-prio"): Invalid input: expected number, received string (found "high"); correct the task entry and push again; the other tasks keep running',
    );
  });

  test('hostile task id is rejected as data', () => {
    expect(problem(7)).toContain('at tasks[7].id (task "bad\\"id;$(x)")');
    expect(problem(7)).toContain('task ids are 1 to 63 letters');
  });

  test('task named like an Object method is claimable', () => {
    const names = parseSchedule(
      Buffer.from(JSON.stringify({ tasks: ['constructor', 'toString', 'hasOwnProperty'].map((id) => ({ id, type: 't', priority: 1, image })) })),
    );
    if (!names.ok) throw names.error;
    const ids = candidates({
      nodeId: 'n',
      roles: [],
      tasks: names.value.tasks,
      assignments: { assignments: {} },
      unchangedForMs: () => 0,
      expiryMs: 1000,
      owned: new Set(),
      nowMs: Date.now(),
      specHash: () => 'h',
    }).map((t) => t.task.id);
    expect(ids).toEqual(['constructor', 'hasOwnProperty', 'toString']);
  });
});

describe('control repo with bad files', () => {
  test('edit whose plan throws leaves the remote unchanged', async () => {
    const bare = makeBareRepo(root, { ...GOOD_FILES, 'assignments.json': '{"assignments": {"web": {"epoch": -1}}}\n' }, 'abort.git');
    const before = remoteHead(bare);
    const repo = controlRepo(bare, root);
    await expect(
      repo.edit('claim web', (snapshot) => {
        if (!snapshot.assignments.ok) throw snapshot.assignments.error;
        return { result: undefined, writes: { 'assignments.json': { assignments: {} } } };
      }),
    ).rejects.toThrow('assignments.json at assignments.web.epoch: Too small: expected number to be >=0 (found -1)');
    expect(remoteHead(bare)).toBe(before);
    expect(remoteFile(bare, 'assignments.json')).toBe('{"assignments": {"web": {"epoch": -1}}}\n');
  });

  test('status --json lists every problem', async () => {
    const bare = makeBareRepo(
      root,
      {
        'schedule.json': { tasks: [{ id: 'a', type: 'x', priority: 'soon', image: 'busybox' }] },
        'roster.json': '{"nodes": [',
        'assignments.json': '',
      },
      'status.git',
    );
    const result = await runCli(['status', '--repo', bare, '--json']);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { problems: string[]; commit: string };
    expect(report.commit).toBe(remoteHead(bare));
    expect(report.problems).toEqual([
      'roster.json line 1 column 12: invalid JSON: Unexpected end of JSON input (near "(end of file)"); fix the syntax and push again (check with `gitfleet validate`)',
      'assignments.json: file is empty; write at least {"assignments": {}} and push again',
      'schedule.json at tasks[0].priority (task "a"): Invalid input: expected number, received string (found "soon"); correct the task entry and push again; the other tasks keep running',
    ]);
  });

  test('missing branch names branch and fix', async () => {
    const bare = makeBareRepo(root, GOOD_FILES, 'branch.git');
    const expected = `branch "nope" not found on remote ${bare}; create it with \`gitfleet init --repo ${bare}\` or pass --branch`;
    const result = await runCli(['status', '--repo', bare, '--branch', 'nope']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(expected);
    const repo = controlRepo(bare, root, { branch: 'nope' });
    const error = await repo.snapshot().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(GitCommandError);
    expect((error as GitCommandError).kind).toBe('missing-branch');
    expect((error as Error).message).toContain(expected);
  });

  test('missing remote names remote and fix', async () => {
    const missing = `${root}/no-such-repo.git`;
    const expected = `remote ${missing} does not exist or is not a git repository; check --repo`;
    const result = await runCli(['status', '--repo', missing]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(expected);
    const error = await controlRepo(missing, root).snapshot().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(GitCommandError);
    expect((error as GitCommandError).kind).toBe('missing-remote');
    expect((error as Error).message).toContain(expected);
  });
});
