/**
 * Many nodes race for many tasks while `gitfleet task add` and `task remove`
 * edit schedule.json at the same time. Every task must end on exactly one
 * node, no schedule edit may be lost, and the engine's own events must show
 * no two runs of one task overlapping.
 *
 * Default run: 4 nodes, 16 tasks. GITFLEET_LONG=1: 8 nodes, 40 tasks.
 */
import * as path from 'node:path';
import {
  assignments,
  claimMismatches,
  cli,
  containers,
  Fleet,
  held,
  initRepo,
  LONG,
  runTag,
  scheduleIds,
  serviceTask,
  sleep,
  waitFor,
} from './harness';

const NODES = Number(process.env.GITFLEET_CONTENTION_NODES ?? (LONG ? 8 : 4));
const TASKS = Number(process.env.GITFLEET_CONTENTION_TASKS ?? (LONG ? 40 : 16));
const ADDS = Math.max(2, Math.round(TASKS / 6));
const REMOVES = ADDS;

jest.setTimeout(LONG ? 900_000 : 360_000);

describe('contended claims with concurrent schedule edits', () => {
  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS!;
  let fleet: Fleet;

  beforeAll(() => {
    fleet = new Fleet(address, 'gitfleet-contention-');
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test(`${NODES} nodes, ${TASKS} tasks: each on exactly one node, no edit lost, zero overlap`, async () => {
    const began = Date.now();
    const tag = runTag('ct');
    const bare = path.join(fleet.dir, 'control.git');
    const finalIds = Array.from({ length: TASKS }, (_, i) => `${tag}-t${i}`);
    const added = finalIds.slice(TASKS - ADDS);
    const removed = Array.from({ length: REMOVES }, (_, i) => `${tag}-gone${i}`);
    const initial = [...finalIds.slice(0, TASKS - ADDS), ...removed];
    await initRepo(bare, initial.map(serviceTask));

    await fleet.recorder.start();
    const nodeIds = Array.from({ length: NODES }, (_, i) => `${tag}n${i}`);
    // At full size, eight writers on two cores need the production-like rhythm
    // (heartbeat 5 s, expiry 30 s) so that heartbeats land well inside the self-fence time.
    const extraArgs = NODES > 4 ? ['--task-heartbeat', '5', '--task-expiry', '30', '--roster-heartbeat', '10', '--idle-poll', '2'] : [];
    for (const id of nodeIds) fleet.start(id, { repo: bare, extraArgs });

    // Let the first claims start, then edit the schedule from many writers at once.
    await waitFor('first claims', async () => held(await assignments(bare)).size >= Math.min(NODES, 4), 120_000, 250);
    const edits = [
      ...added.map((id) => {
        const t = serviceTask(id);
        return cli(['task', 'add', '--repo', bare, '--id', id, '--image', String(t.image), '--kind', 'service', '--', 'sleep', '3600']);
      }),
      ...removed.map((id) => cli(['task', 'remove', '--repo', bare, '--id', id])),
    ];
    const editResults = await Promise.allSettled(edits);
    const failedEdits = editResults.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    expect(failedEdits).toEqual([]);

    const ids = await scheduleIds(bare);
    for (const id of added) expect(ids).toContain(id);
    for (const id of removed) expect(ids).not.toContain(id);
    expect(new Set(ids)).toEqual(new Set(finalIds));

    // Every scheduled task held and running on exactly one node, with matching labels.
    const settled = await waitFor(
      'every task running on exactly one node',
      async () => {
        const claims = held(await assignments(bare));
        const running = (await containers(nodeIds)).filter((c) => c.running);
        if (!finalIds.every((id) => claims.get(id)?.status === 'running')) return false;
        if (running.length !== TASKS) return false;
        if ((await claimMismatches(bare, nodeIds)).length > 0) return false;
        return { claims, running };
      },
      LONG ? 600_000 : 240_000,
      1000,
    );
    const claimedAt = Date.now();

    // Stay a few heartbeats longer: nothing may move or double up.
    await sleep(6_000);
    expect(await claimMismatches(bare, nodeIds)).toEqual([]);
    const after = held(await assignments(bare));
    for (const id of finalIds) expect(after.get(id)?.epoch).toBe(settled.claims.get(id)?.epoch);
    // Removed tasks that were claimed before removal must have been stopped, not left running.
    const runningRemoved = (await containers(nodeIds)).filter((c) => c.running && removed.includes(c.task));
    expect(runningRemoved).toEqual([]);
    const perNode = new Map<string, number>();
    for (const c of settled.running) perNode.set(c.node, (perNode.get(c.node) ?? 0) + 1);

    const overlap = fleet.recorder.maxOverlap();
    expect(overlap.ms).toBe(0);
    process.stdout.write(
      `contention: ${NODES} nodes, ${TASKS} tasks, ${ADDS} adds + ${REMOVES} removes; all running after ` +
        `${((claimedAt - began) / 1000).toFixed(1)} s; ${fleet.recorder.starts} container starts; ` +
        `per node ${JSON.stringify(Object.fromEntries(perNode))}; max overlap ${overlap.ms} ms\n`,
    );
  });
});
