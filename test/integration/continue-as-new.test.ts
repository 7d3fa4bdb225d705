/**
 * The node workflow cuts its history with continue-as-new. A low history
 * limit forces several new runs while a service runs; the claim and the
 * container carry over, so the task keeps exactly one container throughout.
 */
import { Client, Connection } from '@temporalio/client';
import { Fleet, serviceTask, sleep, temporalAddress } from '../support/fleet';

jest.setTimeout(180_000);

describe('node workflow continue-as-new', () => {
  const fleet = new Fleet('can');
  const nodeId = fleet.nodeId('longrun');
  let connection: Connection;
  let client: Client;

  beforeAll(async () => {
    await fleet.initRepo({ tasks: [serviceTask('svc')] });
    connection = await Connection.connect({ address: temporalAddress(), connectTimeout: 10_000 });
    client = new Client({ connection, namespace: 'default' });
  });

  afterAll(async () => {
    await fleet.cleanup();
    await connection?.close();
  });

  test('carries the claim into new runs', async () => {
    const monitor = await fleet.monitor(200);
    fleet.startNode(nodeId, ['--history-limit', '120']);
    const handle = client.workflow.getHandle(`gitfleet-node-${nodeId}`);

    await fleet.waitFor(
      async () => (await fleet.assignments()).svc?.status === 'running',
      90_000,
      'svc running',
    );
    const first = await fleet.containers({ taskId: 'svc', runningOnly: true });
    expect(first).toHaveLength(1);
    const firstRun = (await handle.describe()).runId;

    await fleet.waitFor(
      async () => (await handle.describe()).runId !== firstRun,
      120_000,
      'a new workflow run after continue-as-new',
    );
    // Let the new run heartbeat a few times before checking the claim.
    await sleep(6_000);

    const description = await handle.describe();
    expect(description.status.name).toBe('RUNNING');
    expect(description.raw.workflowExecutionInfo?.firstRunId).toBe(firstRun);
    const status = await handle.query<{ state: string; tasks: Array<{ taskId: string; containerId?: string }> }>('status');
    expect(status.state).toBe('ACTIVE');
    expect(status.tasks.map((t) => t.taskId)).toEqual(['svc']);
    expect(status.tasks[0].containerId).toBe(first[0].id);

    const running = await fleet.containers({ taskId: 'svc', runningOnly: true });
    expect(running.map((c) => c.id)).toEqual([first[0].id]);
    const entry = (await fleet.assignments()).svc;
    expect(entry?.node_id).toBe(nodeId);
    expect(entry?.epoch).toBe(1);
    expect(monitor.overlappingRuns('svc')).toEqual([]);
  });
});
