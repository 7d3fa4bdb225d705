/**
 * A node killed with SIGKILL: its fence keeper stops its container, and after
 * the task expiry another node takes the service over. The Docker engine's
 * own start and finish times show the two containers never ran at once.
 */
import { FAST, Fleet, note, serviceTask } from '../support/fleet';

jest.setTimeout(180_000);

describe('failover after SIGKILL', () => {
  const fleet = new Fleet('failover');
  const first = fleet.nodeId('first');
  const second = fleet.nodeId('second');

  beforeAll(async () => {
    await fleet.initRepo({ tasks: [serviceTask('svc')] });
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test('moves the service without overlap', async () => {
    const monitor = await fleet.monitor();
    const nodeA = fleet.startNode(first);
    const original = await fleet.waitFor(
      async () => {
        const [c] = await fleet.containers({ taskId: 'svc', runningOnly: true });
        const entry = (await fleet.assignments()).svc;
        return c && entry?.status === 'running' && entry.node_id === first && c;
      },
      90_000,
      `svc running on ${first}`,
    );
    expect(original.nodeId).toBe(first);

    // The second node joins and is seen in the roster before the kill.
    const nodeB = fleet.startNode(second);
    await fleet.waitFor(
      async () => (await fleet.status()).nodes.some((n) => n.id === second && n.state !== undefined && n.state !== 'STOPPED'),
      60_000,
      `${second} in the roster`,
      1_000,
    );
    const keeperA = fleet.rememberFenceKeeper(nodeA);
    expect(keeperA).toBeDefined();

    const killedAt = Date.now();
    nodeA.kill('SIGKILL');
    expect((await nodeA.waitExit(10_000)).signal).toBe('SIGKILL');

    const takeoverLimitMs = (FAST.taskExpiryS + 10) * 1000;
    const replacement = await fleet.waitFor(
      async () => {
        const [c] = await fleet.containers({ taskId: 'svc', nodeIds: [second], runningOnly: true });
        return c;
      },
      takeoverLimitMs + 30_000,
      `svc running on ${second}`,
      200,
    );
    const takeoverMs = Date.now() - killedAt;
    note(`failover: svc running on the second node ${takeoverMs} ms after SIGKILL (limit ${takeoverLimitMs} ms)`);
    expect(takeoverMs).toBeLessThanOrEqual(takeoverLimitMs);
    expect(replacement.epoch).toBeGreaterThan(original.epoch);

    // The killed node's container is gone (its fence keeper removed it), and the owner moved.
    await fleet.waitFor(
      async () => (await fleet.containers({ nodeIds: [first] })).length === 0,
      30_000,
      `no container left for ${first}`,
    );
    const entry = await fleet.waitFor(
      async () => {
        const svc = (await fleet.assignments()).svc;
        return svc?.node_id === second && svc.status === 'running' && svc;
      },
      30_000,
      `assignments.json naming ${second}`,
    );
    expect(entry.epoch).toBe(replacement.epoch);

    await monitor.stop();
    const runs = monitor.runsOf('svc');
    note(
      `failover: engine run intervals ${JSON.stringify(
        runs.map((r) => ({
          node: r.nodeId,
          epoch: r.epoch,
          startedAt: r.startedAt && new Date(r.startedAt).toISOString(),
          finishedAt: r.finishedAt && new Date(r.finishedAt).toISOString(),
        })),
      )}`,
    );
    const oldRun = runs.find((r) => r.id === original.id);
    const newRun = runs.find((r) => r.id === replacement.id);
    expect(oldRun?.startedAt).toEqual(expect.any(Number));
    expect(oldRun?.finishedAt).toEqual(expect.any(Number));
    expect(newRun?.startedAt).toEqual(expect.any(Number));
    expect(oldRun!.finishedAt!).toBeLessThanOrEqual(newRun!.startedAt!);
    expect(monitor.overlappingRuns('svc')).toEqual([]);
    expect(monitor.overlaps).toEqual([]);
    note(`failover: gap between the old container stopping and the new one starting: ${newRun!.startedAt! - oldRun!.finishedAt!} ms`);

    nodeB.kill('SIGTERM');
    expect(await nodeB.waitExit(60_000)).toEqual({ code: 0, signal: null });
    expect(await fleet.containers()).toEqual([]);
  });
});
