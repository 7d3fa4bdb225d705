/**
 * Three real nodes share six service tasks. Each task must end up with
 * exactly one running container, on the node assignments.json names, and a
 * SIGTERM to every node must leave no container behind.
 */
import { ContainerInfo, Fleet, note, serviceTask } from '../support/fleet';

jest.setTimeout(180_000);

const TASKS = ['s1', 's2', 's3', 's4', 's5', 's6'];

describe('three nodes, six services', () => {
  const fleet = new Fleet('three');
  const ids = ['a', 'b', 'c'].map((name) => fleet.nodeId(name));

  beforeAll(async () => {
    await fleet.initRepo({ tasks: TASKS.map((id) => serviceTask(id)) });
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test('places each task once, then drains', async () => {
    const monitor = await fleet.monitor();
    const started = Date.now();
    const nodes = ids.map((id) => fleet.startNode(id));

    let running: ContainerInfo[] = [];
    await fleet.waitFor(
      async () => {
        running = await fleet.containers({ runningOnly: true });
        const assignments = await fleet.assignments();
        return TASKS.every((taskId) => {
          const mine = running.filter((c) => c.taskId === taskId);
          const entry = assignments[taskId];
          return (
            mine.length === 1 &&
            entry?.status === 'running' &&
            entry.node_id === mine[0].nodeId &&
            entry.epoch === mine[0].epoch &&
            entry.container_id === mine[0].id
          );
        });
      },
      120_000,
      'one running container per task, matching assignments.json',
      1_000,
    );
    note(`three nodes: six tasks placed after ${Date.now() - started} ms`);
    const placement = Object.fromEntries(running.map((c) => [c.taskId, c.nodeId]));
    note(`placement: ${JSON.stringify(placement)}`);

    // Stable for a few task heartbeats: still one container each, same owner.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const later = await fleet.containers({ runningOnly: true });
    const assignments = await fleet.assignments();
    for (const taskId of TASKS) {
      const mine = later.filter((c) => c.taskId === taskId);
      expect(mine).toHaveLength(1);
      expect(assignments[taskId].node_id).toBe(mine[0].nodeId);
    }
    for (const taskId of TASKS) expect(monitor.maxRunningByTask.get(taskId)).toBe(1);
    expect(monitor.overlaps).toEqual([]);
    expect(nodes.every((n) => n.running)).toBe(true);

    // Drain all three at once.
    for (const node of nodes) node.kill('SIGTERM');
    const exits = await Promise.all(nodes.map((n) => n.waitExit(90_000)));
    expect(exits).toEqual(nodes.map(() => ({ code: 0, signal: null })));
    expect(await fleet.containers()).toEqual([]);
    const released = await fleet.assignments();
    for (const taskId of TASKS) expect(released[taskId]).toMatchObject({ node_id: null, status: 'released' });
    await monitor.stop();
    expect(monitor.overlaps).toEqual([]);
    for (const taskId of TASKS) expect(monitor.overlappingRuns(taskId)).toEqual([]);
  });
});
