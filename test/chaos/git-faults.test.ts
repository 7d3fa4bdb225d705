/**
 * Git remote faults. Node A and node B reach the control repo over separate
 * paths: two veth links into a network namespace that runs `git daemon`, or
 * (long runs) a cuttable TCP proxy and a direct connection. With A's path
 * cut for longer than the expiry, A keeps its service until its
 * self-fence deadline and then stops it, B takes the task over, the two runs
 * never overlap (engine events), and A converges once the link is back.
 * Also: pushes rejected many times in a row by many writers, and a stale
 * index.lock and an interrupted rebase left in a node's clone.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import {
  assignments,
  claimMismatches,
  containers,
  FAST,
  Fleet,
  held,
  initRepo,
  LONG,
  readControl,
  runTag,
  serviceTask,
  sleep,
  waitFor,
} from './harness';
import { CuttableProxy, GitDaemon, NetnsRemote } from './netfault';

const execFileAsync = promisify(execFile);
const EXPIRY_MS = FAST.expiryS * 1000;
const SELF_FENCE_MS = 0.6 * EXPIRY_MS;

jest.setTimeout(300_000);

async function rosterSeq(bare: string, node: string): Promise<number> {
  const roster = await readControl<{ nodes: Array<{ id: string; heartbeat_seq?: number }> }>(bare, 'roster.json');
  return roster.nodes.find((n) => n.id === node)?.heartbeat_seq ?? -1;
}

// `netns` serves the repo from a network namespace and takes node A's veth
// link down; `refuse` and `blackhole` cut a TCP proxy on 127.0.0.1 (the
// proxy ones run with GITFLEET_LONG=1).
type CutMode = 'netns' | 'refuse' | 'blackhole';
const CUT_MODES: CutMode[] = LONG ? ['netns', 'refuse', 'blackhole'] : ['netns'];

/** The remote as node A and node B reach it, with a way to cut and restore A's path. */
interface CuttableRemote {
  urlA: string;
  urlB: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  stop(): Promise<void>;
}

async function startRemote(mode: CutMode, dir: string): Promise<CuttableRemote> {
  if (mode === 'netns') {
    const remote = new NetnsRemote(dir);
    try {
      await remote.start();
    } catch (err) {
      await remote.stop();
      throw err;
    }
    return {
      urlA: remote.url('a'),
      urlB: remote.url('b'),
      cut: () => remote.cut('a'),
      restore: () => remote.restore('a'),
      stop: () => remote.stop(),
    };
  }
  const daemon = new GitDaemon(dir);
  await daemon.start();
  const proxy = new CuttableProxy(daemon.port);
  await proxy.start();
  return {
    urlA: daemon.url(proxy.port),
    urlB: daemon.url(),
    cut: () => proxy.cut(mode),
    restore: () => proxy.restore(),
    stop: async () => {
      await proxy.stop();
      daemon.stop();
    },
  };
}

describe.each(CUT_MODES)('remote cut (%s) for longer than the expiry', (mode) => {
  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS!;
  let fleet: Fleet;
  let remote: CuttableRemote | undefined;

  beforeAll(() => {
    fleet = new Fleet(address, 'gitfleet-cut-');
  });

  afterAll(async () => {
    await fleet.cleanup();
    await remote?.stop();
  });

  test('owner fences itself before the takeover, no overlap, owner converges after', async () => {
    const tag = runTag(mode === 'refuse' ? 'cr' : mode === 'blackhole' ? 'cb' : 'cn');
    const bare = path.join(fleet.dir, 'control.git');
    const taskId = `${tag}-svc`;
    await initRepo(bare, [serviceTask(taskId)]);
    remote = await startRemote(mode, fleet.dir);
    await fleet.recorder.start();

    const a = `${tag}a`;
    const b = `${tag}b`;
    fleet.start(a, { repo: remote.urlA });
    const first = await waitFor('A runs the task', async () => {
      const c = held(await assignments(bare)).get(taskId);
      const run = (await containers([a])).find((x) => x.running && x.task === taskId);
      return c?.node_id === a && c.status === 'running' && run ? c : false;
    }, 120_000, 500);
    fleet.start(b, { repo: remote.urlB });
    await waitFor('B in the roster', async () => (await rosterSeq(bare, b)) > 0, 60_000, 500);
    await sleep(3000);

    const cutAt = Date.now();
    await remote.cut();
    // A was running the service when the link went down.
    const atCut = [...fleet.recorder.intervals.values()].find((r) => r.node === a && r.task === taskId);
    expect(atCut).toBeDefined();
    expect(atCut!.endMs === undefined || atCut!.endMs >= cutAt).toBe(true);

    const stopped = await waitFor('A stops its container', () => {
      const run = [...fleet.recorder.intervals.values()].find((r) => r.node === a && r.task === taskId && r.endMs !== undefined);
      return run?.endMs;
    }, 60_000, 250);
    const fenceAfterCut = stopped - cutAt;

    const taken = await waitFor('B takes the task over', async () => {
      const c = held(await assignments(bare)).get(taskId);
      const run = (await containers([b])).find((x) => x.running && x.task === taskId);
      return c?.node_id === b && c.status === 'running' && (c.epoch ?? 0) > (first.epoch ?? 0) && run ? Date.now() : false;
    }, EXPIRY_MS + 40_000, 250);
    const takeoverAfterCut = taken - cutAt;
    const bStart = [...fleet.recorder.intervals.values()].find((r) => r.node === b && r.task === taskId)!.startMs;

    // Keep the link down for longer than the expiry in every case.
    const holdUntil = cutAt + EXPIRY_MS + 5_000;
    if (Date.now() < holdUntil) await sleep(holdUntil - Date.now());
    const restoredAt = Date.now();
    const seqAtRestore = await rosterSeq(bare, a);
    await remote.restore();

    // A converges: its roster heartbeats resume and it holds no stale claim.
    await waitFor('A heartbeats again', async () => (await rosterSeq(bare, a)) > seqAtRestore, 150_000, 1000);
    const convergedAfter = Date.now() - restoredAt;
    await sleep(FAST.heartbeatS * 2000);
    const claims = held(await assignments(bare));
    expect(claims.get(taskId)?.node_id).toBe(b);
    expect([...claims.values()].filter((c) => c.node_id === a)).toEqual([]);
    expect((await containers([a])).filter((x) => x.running)).toEqual([]);
    expect(await claimMismatches(bare, [a, b])).toEqual([]);

    const overlap = fleet.recorder.maxOverlap();
    expect(overlap.ms).toBe(0);
    expect(bStart).toBeGreaterThan(stopped);
    // Fence: 0.6 x expiry after the last renewal began (before the cut), plus stop (1 s) and keeper poll (0.5 s), plus load slack.
    expect(fenceAfterCut).toBeLessThan(SELF_FENCE_MS + 1_500 + 3_000);
    process.stdout.write(
      `cut ${mode}: A stopped its service ${(fenceAfterCut / 1000).toFixed(1)} s after the cut, B ran it ` +
        `${(takeoverAfterCut / 1000).toFixed(1)} s after the cut (gap ${((bStart - stopped) / 1000).toFixed(1)} s); ` +
        `A heartbeated again ${(convergedAfter / 1000).toFixed(1)} s after the link came back; max overlap ${overlap.ms} ms\n`,
    );
  });
});

describe('local clone and push faults', () => {
  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS!;
  let fleet: Fleet;

  beforeAll(() => {
    fleet = new Fleet(address, 'gitfleet-pushfault-');
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test('pushes rejected many times in a row, then a stale index.lock and rebase state in the clone', async () => {
    const tag = runTag('pf');
    const bare = path.join(fleet.dir, 'control.git');
    const taskIds = [`${tag}-s0`, `${tag}-s1`];
    await initRepo(bare, taskIds.map(serviceTask));
    await fleet.recorder.start();
    const nodes = [`${tag}a`, `${tag}b`];
    process.env.GITFLEET_LOG_LEVEL = 'debug';
    try {
      for (const id of nodes) fleet.start(id, { repo: bare, maxTasks: 1 });
    } finally {
      delete process.env.GITFLEET_LOG_LEVEL;
    }
    await waitFor('both tasks running', async () => {
      const claims = held(await assignments(bare));
      const running = (await containers(nodes)).filter((c) => c.running);
      return taskIds.every((t) => claims.get(t)?.status === 'running') && running.length === 2;
    }, 120_000, 500);

    // Many writers push a file no node reads, as fast as they can, for 15 s.
    const writers = 6;
    let pushes = 0;
    const until = Date.now() + 15_000;
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const dir = path.join(fleet.dir, `writer${w}`);
        await execFileAsync('git', ['clone', '--quiet', bare, dir]);
        const git = (...args: string[]) =>
          execFileAsync('git', ['-C', dir, '-c', 'user.name=w', '-c', 'user.email=w@x.invalid', ...args], { timeout: 20_000 });
        let n = 0;
        while (Date.now() < until && n < 2000) {
          n++;
          try {
            await git('fetch', '--quiet', 'origin', 'main');
            await git('reset', '--quiet', '--hard', 'origin/main');
            fs.writeFileSync(path.join(dir, `noise-${w}.txt`), `${n}\n`);
            await git('add', `noise-${w}.txt`);
            await git('commit', '--quiet', '-m', `noise ${w} ${n}`);
            await git('push', '--quiet', 'origin', 'HEAD:main');
            pushes++;
          } catch {
            // lost the race; try again
          }
        }
      }),
    );
    const rejected = nodes.map((id) => (fleet.log(id).match(/push did not land/g) ?? []).length).reduce((x, y) => x + y, 0);
    await waitFor('fleet settled after the push storm', async () => {
      const claims = held(await assignments(bare));
      const running = (await containers(nodes)).filter((c) => c.running);
      return taskIds.every((t) => claims.get(t)?.status === 'running') && running.length === 2 && (await claimMismatches(bare, nodes)).length === 0;
    }, EXPIRY_MS + 60_000, 1000);
    expect(fleet.recorder.maxOverlap().ms).toBe(0);

    // A stale index.lock and an interrupted rebase in node A's clone.
    const a = nodes[0];
    const gitDir = path.join(fleet.workdir(a), 'clone', '.git');
    const mine = [...held(await assignments(bare))].find(([, c]) => c.node_id === a)!;
    fs.writeFileSync(path.join(gitDir, 'index.lock'), '');
    fs.mkdirSync(path.join(gitDir, 'rebase-merge'), { recursive: true });
    await waitFor('A renews after the stale lock', async () => {
      const c = (await assignments(bare))[mine[0]];
      return c.epoch === mine[1].epoch && (c.heartbeat_seq ?? 0) >= (mine[1].heartbeat_seq ?? 0) + 3;
    }, 60_000, 500);
    await sleep(1000);
    expect(fs.existsSync(path.join(gitDir, 'rebase-merge'))).toBe(false);
    expect((await assignments(bare))[mine[0]].node_id).toBe(a);
    expect(await claimMismatches(bare, nodes)).toEqual([]);
    expect(fleet.recorder.maxOverlap().ms).toBe(0);
    process.stdout.write(`push storm: ${writers} writers landed ${pushes} pushes in 15 s; the nodes saw ${rejected} rejected pushes; both tasks running once afterwards, max overlap 0 ms\n`);
  });
});
