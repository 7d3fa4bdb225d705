/**
 * One real node (spawned `gitfleet node` process, real Temporal server, real
 * Docker engine, real bare control repo) running a service and batch tasks.
 */
import { batchTask, Fleet, note, serviceTask } from '../support/fleet';

jest.setTimeout(150_000);

describe('a single node', () => {
  const fleet = new Fleet('single');
  const nodeId = fleet.nodeId('solo');

  beforeAll(async () => {
    await fleet.initRepo({
      tasks: [
        serviceTask('svc'),
        batchTask('job-ok', 'echo result 42; exit 0', { priority: 5 }),
        batchTask('job-fail', 'echo failing on purpose; exit 3', { priority: 5, max_retries: 0 }),
      ],
    });
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test('runs service and batch tasks', async () => {
    const started = Date.now();
    const node = fleet.startNode(nodeId);

    const settled = await fleet.waitFor(
      async () => {
        const status = await fleet.status();
        const byId = Object.fromEntries(status.tasks.map((t) => [t.id, t]));
        const done = byId.svc?.status === 'running' && byId['job-ok']?.status === 'succeeded' && byId['job-fail']?.status === 'failed';
        return done && status;
      },
      90_000,
      'svc running, job-ok succeeded and job-fail failed',
      1_000,
    );
    note(`single node: all three tasks settled after ${Date.now() - started} ms`);
    expect(node.running).toBe(true);

    const svc = settled.tasks.find((t) => t.id === 'svc')!;
    expect(svc.owner).toBe(nodeId);

    // The Docker engine: exactly one container for the service, none for the finished batch tasks.
    const svcContainers = await fleet.containers({ taskId: 'svc' });
    expect(svcContainers).toHaveLength(1);
    expect(svcContainers[0]).toMatchObject({ nodeId, running: true, epoch: svc.epoch });
    expect(svcContainers[0].startedAt).not.toBeNull();
    expect(await fleet.containers({ taskId: 'job-ok' })).toEqual([]);
    expect(await fleet.containers({ taskId: 'job-fail' })).toEqual([]);

    // assignments.json on the remote carries the results.
    const assignments = await fleet.assignments();
    expect(assignments['job-ok']).toMatchObject({ status: 'succeeded', exit_code: 0, node_id: null });
    expect(assignments['job-ok'].last_log!.join('\n')).toContain('result 42');
    expect(assignments['job-fail']).toMatchObject({ status: 'failed', exit_code: 3, node_id: null, given_up: true });
    expect(assignments['job-fail'].last_log!.join('\n')).toContain('failing on purpose');
    expect(assignments['job-fail'].last_error).toContain('exit code 3');
    expect(assignments.svc).toMatchObject({ status: 'running', node_id: nodeId, container_id: svcContainers[0].id });
    expect(settled.tasks.find((t) => t.id === 'job-fail')!.exitCode).toBe(3);
    expect(settled.tasks.find((t) => t.id === 'job-ok')!.exitCode).toBe(0);

    // A failed batch with max_retries 0 is not started again.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    expect((await fleet.assignments())['job-fail']).toMatchObject({ status: 'failed', attempts: 1 });
    expect(await fleet.containers({ taskId: 'job-fail' })).toEqual([]);

    // SIGTERM drains: the service is released, its container is gone, the node exits 0.
    node.kill('SIGTERM');
    const exit = await node.waitExit(60_000);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(await fleet.containers()).toEqual([]);
    const after = await fleet.assignments();
    expect(after.svc).toMatchObject({ status: 'released', node_id: null });
    expect(after['job-ok'].status).toBe('succeeded');
  });
});
