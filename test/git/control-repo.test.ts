/**
 * ControlRepo against real git: a bare remote made by `initControlRepo` and
 * clones in temporary folders. No git call is faked.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { initControlRepo } from '../../src/commands/repo-ops';
import { ControlRepo, ControlRepoOptions } from '../../src/git/control-repo';
import { GitCommandError } from '../../src/git/errors';
import type { AssignmentsFile } from '../../src/state/schemas';
import { git, remoteCommitCount, remoteHead, remoteText } from '../support/fleet';

const logger = pino({ level: process.env.GITFLEET_TEST_LOG_LEVEL ?? 'silent' });

let root: string;
let remote: string;

function clone(name: string, extra: Partial<ControlRepoOptions> = {}): ControlRepo {
  return new ControlRepo({
    remote,
    dir: path.join(root, name),
    logger,
    backoffBaseMs: 20,
    backoffCapMs: 250,
    ...extra,
  });
}

/** Push `files` (name to raw text) to the remote in one commit, bypassing ControlRepo. */
async function pushRaw(files: Record<string, string>): Promise<void> {
  const work = fs.mkdtempSync(path.join(root, 'raw-'));
  await git(['clone', '--quiet', remote, work]);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(work, name), text);
  await git(['add', '--', ...Object.keys(files)], work);
  await git(['commit', '--quiet', '-m', 'raw edit'], work);
  await git(['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], work);
}

function counter(file: AssignmentsFile): number {
  return ((file as Record<string, unknown>).counter as number | undefined) ?? 0;
}

beforeEach(async () => {
  root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-control-repo-')));
  remote = path.join(root, 'remote.git');
  await initControlRepo(remote, 'main', logger, {
    'schedule.json': { tasks: [{ id: 'a', type: 't', priority: 1, image: 'gitfleet/busybox:local' }] },
  });
});

afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('ControlRepo.snapshot and edit', () => {
  test('snapshot reads the files at the remote tip', async () => {
    const snapshot = await clone('c1').snapshot();
    expect(snapshot.commit).toBe(await remoteHead(remote));
    expect(snapshot.schedule.ok && snapshot.schedule.value.tasks.map((t) => t.task.id)).toEqual(['a']);
    expect(snapshot.assignments.ok && snapshot.assignments.value).toEqual({ assignments: {} });
  });

  test('edit commits and pushes the new file, with the message given', async () => {
    const before = await remoteHead(remote);
    const repo = clone('c1');
    const outcome = await repo.edit('mark a', (snapshot) => {
      if (!snapshot.assignments.ok) throw snapshot.assignments.error;
      const file = { ...snapshot.assignments.value, assignments: { a: { node_id: 'n1', status: 'claimed', epoch: 1 } } };
      return { result: 'done', writes: { 'assignments.json': file } };
    });
    expect(outcome.result).toBe('done');
    expect(outcome.commit).toBe(await remoteHead(remote));
    expect(outcome.commit).not.toBe(before);
    expect(await git(['--git-dir', remote, 'log', '-1', '--format=%s', 'main'])).toBe('mark a');
    expect(JSON.parse(await remoteText(remote, 'assignments.json'))).toEqual({
      assignments: { a: { node_id: 'n1', status: 'claimed', epoch: 1 } },
    });
    // A second clone sees the change.
    const other = await clone('c2').snapshot();
    expect(other.assignments.ok && other.assignments.value.assignments.a?.node_id).toBe('n1');
  });

  test('an edit that changes nothing makes no commit', async () => {
    const before = await remoteHead(remote);
    const outcome = await clone('c1').edit('no-op', (snapshot) => ({
      result: 1,
      writes: { 'assignments.json': snapshot.assignments.ok ? snapshot.assignments.value : undefined },
    }));
    expect(outcome.commit).toBeUndefined();
    expect(await remoteHead(remote)).toBe(before);
  });

  test('two clones racing 2 x 10 increments lose no update', async () => {
    const commitsBefore = await remoteCommitCount(remote);
    const repos = [clone('racer-1', { pushRetries: 60 }), clone('racer-2', { pushRetries: 60 })];
    const increment = (repo: ControlRepo, n: number) =>
      repo.edit(`increment ${n}`, (snapshot) => {
        if (!snapshot.assignments.ok) throw snapshot.assignments.error;
        const file = snapshot.assignments.value;
        return { result: counter(file) + 1, writes: { 'assignments.json': { ...file, counter: counter(file) + 1 } } };
      });
    const started = Date.now();
    const outcomes = await Promise.all(repos.flatMap((repo, r) => Array.from({ length: 10 }, (_, i) => increment(repo, r * 10 + i))));
    const rejections = outcomes.reduce((sum, o) => sum + o.rejections, 0);
    process.stdout.write(`20 racing increments took ${Date.now() - started} ms with ${rejections} rejected pushes\n`);

    const final = JSON.parse(await remoteText(remote, 'assignments.json'));
    expect(final.counter).toBe(20);
    expect(final.assignments).toEqual({});
    expect(await remoteCommitCount(remote)).toBe(commitsBefore + 20);
    // Each edit saw a distinct value, so each wrote a distinct counter.
    expect(outcomes.map((o) => o.result).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });
});

describe('repair of a damaged clone', () => {
  test('a stale .git/index.lock is removed and the edit lands', async () => {
    const repo = clone('c1');
    await repo.snapshot();
    const lock = path.join(root, 'c1', '.git', 'index.lock');
    fs.writeFileSync(lock, '');
    const outcome = await repo.edit('after lock', (snapshot) => ({
      result: undefined,
      writes: { 'assignments.json': { ...(snapshot.assignments.ok ? snapshot.assignments.value : {}), counter: 1 } },
    }));
    expect(outcome.commit).toBe(await remoteHead(remote));
    expect(JSON.parse(await remoteText(remote, 'assignments.json')).counter).toBe(1);
    expect(fs.existsSync(lock)).toBe(false);
  });

  test('a clone left in the middle of a conflicted merge is cleaned up', async () => {
    const repo = clone('c1');
    await repo.snapshot();
    const dir = path.join(root, 'c1');
    // Build a real conflicted merge in the clone: two branches change the same line.
    await git(['checkout', '--quiet', '-b', 'side'], dir);
    fs.writeFileSync(path.join(dir, 'assignments.json'), '{"assignments": {}, "side": 1}\n');
    await git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-am', 'side'], dir);
    await git(['checkout', '--quiet', 'main'], dir);
    fs.writeFileSync(path.join(dir, 'assignments.json'), '{"assignments": {}, "main": 1}\n');
    await git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '--quiet', '-am', 'main'], dir);
    await expect(git(['-c', 'user.name=t', '-c', 'user.email=t@t', 'merge', 'side'], dir)).rejects.toThrow();
    expect(fs.existsSync(path.join(dir, '.git', 'MERGE_HEAD'))).toBe(true);
    expect(await git(['diff', '--name-only', '--diff-filter=U'], dir)).toBe('assignments.json');

    const outcome = await repo.edit('after merge', (snapshot) => {
      if (!snapshot.assignments.ok) throw snapshot.assignments.error;
      return { result: undefined, writes: { 'assignments.json': { ...snapshot.assignments.value, counter: 7 } } };
    });
    expect(outcome.commit).toBe(await remoteHead(remote));
    // Only the edit landed: none of the local merge commits reached the remote.
    expect(JSON.parse(await remoteText(remote, 'assignments.json'))).toEqual({ assignments: {}, counter: 7 });
    expect(await git(['--git-dir', remote, 'log', '--format=%s', 'main'])).not.toMatch(/^(side|main)$/m);
    expect(fs.existsSync(path.join(dir, '.git', 'MERGE_HEAD'))).toBe(false);
  });

  test('a hand-written MERGE_HEAD is cleared', async () => {
    const repo = clone('c1');
    const first = await repo.snapshot();
    const mergeHead = path.join(root, 'c1', '.git', 'MERGE_HEAD');
    fs.writeFileSync(mergeHead, `${first.commit}\n`);
    const outcome = await repo.edit('after MERGE_HEAD', (snapshot) => ({
      result: undefined,
      writes: { 'assignments.json': { ...(snapshot.assignments.ok ? snapshot.assignments.value : {}), counter: 2 } },
    }));
    expect(outcome.commit).toBe(await remoteHead(remote));
    // The pushed commit has one parent: no merge commit was made.
    expect(await git(['--git-dir', remote, 'rev-list', '--parents', '-n', '1', 'main'])).toMatch(/^[0-9a-f]{40} [0-9a-f]{40}$/);
    expect(fs.existsSync(mergeHead)).toBe(false);
  });
});

describe('errors', () => {
  test('a missing remote gives an error naming the remote', async () => {
    const missing = path.join(root, 'no-such-remote.git');
    const repo = new ControlRepo({ remote: missing, dir: path.join(root, 'c1'), logger, pushRetries: 1, backoffBaseMs: 10 });
    const error = await repo.snapshot().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(GitCommandError);
    expect((error as GitCommandError).kind).toBe('missing-remote');
    expect((error as Error).message).toContain(missing);
    expect((error as Error).message).toContain('does not exist');
  });

  test('a missing branch says so', async () => {
    const repo = clone('c1', { branch: 'no-such-branch', pushRetries: 1 });
    const error = await repo.snapshot().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(GitCommandError);
    expect((error as GitCommandError).kind).toBe('missing-branch');
    expect((error as Error).message).toContain('branch "no-such-branch" not found');
    expect((error as Error).message).toContain(remote);
  });

  test('an invalid file is never rewritten: a plan that throws leaves the remote unchanged', async () => {
    const broken = '{"assignments": {"a": {"node_id": "n1",, }}\n';
    await pushRaw({ 'assignments.json': broken });
    const before = await remoteHead(remote);
    const repo = clone('c1');
    let sawProblem = '';
    await expect(
      repo.edit('must not land', (snapshot) => {
        if (!snapshot.assignments.ok) {
          sawProblem = snapshot.assignments.error.message;
          throw snapshot.assignments.error;
        }
        return { result: undefined, writes: { 'assignments.json': { assignments: {} } } };
      }),
    ).rejects.toThrow(/assignments\.json line 1 column \d+: invalid JSON/);
    expect(sawProblem).toContain('assignments.json');
    expect(await remoteHead(remote)).toBe(before);
    expect(await remoteText(remote, 'assignments.json')).toBe(broken);
  });

  test('a plan that throws after reading valid files pushes nothing', async () => {
    const before = await remoteHead(remote);
    await expect(
      clone('c1').edit('must not land', () => {
        throw new Error('plan refused');
      }),
    ).rejects.toThrow('plan refused');
    expect(await remoteHead(remote)).toBe(before);
  });

  test('an edit of another file keeps the invalid file byte for byte', async () => {
    const broken = '{"nodes": [ {"id": 5} ]}\n';
    await pushRaw({ 'roster.json': broken });
    const outcome = await clone('c1').edit('touch assignments', (snapshot) => {
      expect(snapshot.roster.ok).toBe(false);
      return { result: undefined, writes: { 'assignments.json': { assignments: {}, counter: 1 } } };
    });
    expect(outcome.commit).toBe(await remoteHead(remote));
    expect(await remoteText(remote, 'roster.json')).toBe(broken);
  });
});

describe('remote addresses', () => {
  test('relative remote path is resolved from the caller', async () => {
    const cwd = process.cwd();
    process.chdir(root);
    try {
      const repo = new ControlRepo({ remote: 'remote.git', dir: path.join(root, 'rel-clone'), logger });
      expect(repo.remote).toBe(remote);
      const snapshot = await repo.snapshot();
      expect(snapshot.commit).toBe(await remoteHead(remote));
    } finally {
      process.chdir(cwd);
    }
  });

  test('reused clone folder follows a new remote', async () => {
    const missing = new ControlRepo({ remote: path.join(root, 'missing.git'), dir: path.join(root, 'reused'), logger, networkRetries: 0 });
    await expect(missing.snapshot()).rejects.toThrow(/missing\.git/);
    const snapshot = await clone('reused').snapshot();
    expect(snapshot.commit).toBe(await remoteHead(remote));
  });
});
