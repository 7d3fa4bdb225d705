/**
 * `gitfleet validate` on a file, a folder and a remote: exit code 0 on good files, 1 with the
 * parse messages on bad ones.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseSchedule } from '../../src/state/control-files';
import { GOOD_FILES, makeBareRepo, runCli, tempDir } from './helpers';

const root = tempDir('gitfleet-validate-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function writeFile(name: string, contents: Buffer | string): string {
  const file = path.join(root, name);
  fs.writeFileSync(file, contents);
  return file;
}

const BAD_SCHEDULES: Array<[string, Buffer | string]> = [
  ['invalid JSON', '{"tasks": [}'],
  ['wrong shape', '{"tasks": {}}'],
  ['empty file', ''],
  ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d])],
  ['duplicate ids', JSON.stringify({ tasks: [{ id: 'a', type: 't', priority: 1, image: 'x' }, { id: 'a', type: 't', priority: 1, image: 'x' }] })],
  ['unknown type', JSON.stringify({ tasks: [{ id: 'a', type: 'nope', priority: 1 }] })],
  ['invalid image', JSON.stringify({ tasks: [{ id: 'a', type: 't', priority: 1, image: 'UPPER/Case' }] })],
  ['non-numeric priority', JSON.stringify({ tasks: [{ id: 'a', type: 't', priority: '1', image: 'x' }] })],
];

test('good schedule exits 0', async () => {
  const file = writeFile('good.json', JSON.stringify(GOOD_FILES['schedule.json']));
  const result = await runCli(['validate', file]);
  expect(result.stderr).toBe('');
  expect(result.stdout.trim()).toMatch(/: valid$/);
  expect(result.code).toBe(0);
});

test.each(BAD_SCHEDULES)('%s exits 1 with the parse message', async (name, contents) => {
  const file = writeFile(`${name.replace(/\W/g, '-')}.json`, contents);
  const parsed = parseSchedule(fs.readFileSync(file));
  const expected = parsed.ok ? parsed.value.problems.map((p) => p.problem) : [parsed.error.message];
  expect(expected.length).toBeGreaterThan(0);
  const result = await runCli(['validate', file]);
  expect(result.code).toBe(1);
  for (const message of expected) expect(result.stderr).toContain(message);
  expect(result.stderr).toMatch(/\d+ problems? found\n$/);
});

test('oversized schedule exits 1', async () => {
  const file = writeFile('big.json', Buffer.alloc(8 * 1024 * 1024 + 10, 0x20));
  const result = await runCli(['validate', file]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('larger than the 8 MiB');
});

test('folder checks every control file', async () => {
  const dir = path.join(root, 'folder');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'schedule.json'), JSON.stringify(GOOD_FILES['schedule.json']));
  fs.writeFileSync(path.join(dir, 'roster.json'), '{"nodes": "none"}');
  fs.writeFileSync(path.join(dir, 'fleet.json'), '{"settings": {"task_expiry_s": -1}}');
  const result = await runCli(['validate', dir]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('roster.json at nodes: Invalid input: expected array, received string (found "none")');
  expect(result.stderr).toContain('assignments.json: file is missing from the control repo');
  expect(result.stderr).toContain('fleet.json at settings.task_expiry_s');
  expect(result.stderr).toContain('3 problems found');
});

test('good folder exits 0', async () => {
  const dir = path.join(root, 'good-folder');
  fs.mkdirSync(dir);
  for (const [name, value] of Object.entries(GOOD_FILES)) fs.writeFileSync(path.join(dir, name), JSON.stringify(value));
  const result = await runCli(['validate', dir]);
  expect(result.code).toBe(0);
});

test('--repo checks a remote', async () => {
  const good = makeBareRepo(root, GOOD_FILES, 'good.git');
  expect((await runCli(['validate', '--repo', good])).code).toBe(0);
  const bad = makeBareRepo(root, { ...GOOD_FILES, 'assignments.json': '{"assignments": {"web": {"status": 7}}}' }, 'bad.git');
  const result = await runCli(['validate', '--repo', bad]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('assignments.json at assignments.web.status: Invalid input: expected string, received number (found 7)');
});
