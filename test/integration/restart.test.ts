/**
 * A node process killed with SIGKILL and started again with the same id and
 * work folder re-attaches to its durable workflow instead of starting a new
 * one. The task never has two running containers meanwhile, which the test
 * checks by polling the engine every 200 ms.
 */
import * as fs from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { Fleet, isAlive, note, serviceTask, temporalAddress } from '../support/fleet';

jest.setTimeout(180_000);

interface Identity {
  runId: string;
  firstRunId: string;
  status: string;
}

describe('node restart after SIGKILL', () => {
  const fleet = new Fleet('restart');
  const nodeId = fleet.nodeId('phoenix');
  const watcherId = fleet.nodeId('watcher');
  let connection: Connection;
  let client: Client;

  async function identity(): Promise<Identity> {
    const description = await client.workflow.getHandle(`gitfleet-node-${nodeId}`).describe();
    return {
      runId: description.runId,
      firstRunId: description.raw.workflowExecutionInfo?.firstRunId || description.runId,
      status: description.status.name,
    };
  }

  beforeAll(async () => {
    await fleet.initRepo({ tasks: [serviceTask('svc')] });
    connection = await Connection.connect({ address: temporalAddress(), connectTimeout: 10_000 });
    client = new Client({ connection, namespace: 'default' });
  });

  afterAll(async () => {
    await fleet.cleanup();
    await connection?.close();
  });

  test('re-attaches without a second container', async () => {
    const monitor = await fleet.monitor(200);
    const node = fleet.startNode(nodeId);
    const workdir = node.workdir;
    await fleet.waitFor(
      async () => {
        const entry = (await fleet.assignments()).svc;
        const running = await fleet.containers({ taskId: 'svc', runningOnly: true });
        return entry?.status === 'running' && entry.node_id === nodeId && running.length === 1;
      },
      90_000,
      `svc running on ${nodeId}`,
    );
    const before = await identity();
    expect(before.status).toBe('RUNNING');
    // A second node runs too, so a claim the restarted node fails to keep would move to it.
    const watcher = fleet.startNode(watcherId);

    const oldKeeper = fleet.rememberFenceKeeper(node);
    node.kill('SIGKILL');
    expect((await node.waitExit(10_000)).signal).toBe('SIGKILL');
    const restartedAt = Date.now();
    const again = fleet.startNode(nodeId, [], { workdir });

    // The new process attaches and the workflow runs on: the node shows ACTIVE with svc again.
    const queried = await fleet.waitFor(
      async () => {
        const status = (await client.workflow.getHandle(`gitfleet-node-${nodeId}`).query('status')) as {
          state: string;
          tasks: Array<{ taskId: string; containerId?: string }>;
        };
        return status.state === 'ACTIVE' && status.tasks.some((t) => t.taskId === 'svc' && t.containerId) && status;
      },
      60_000,
      'the restarted node to answer the status query with svc',
      500,
    );
    note(`restart: node answered with svc ${Date.now() - restartedAt} ms after restarting`);
    const after = await identity();
    expect(after.firstRunId).toBe(before.firstRunId);
    expect(after.status).toBe('RUNNING');

    // A fence keeper watches the restarted node: the old one when it was still
    // running (it keeps its deadline), otherwise a new one.
    const keeper = await fleet.waitFor(() => {
      const pid = again.fenceKeeperPid();
      return pid !== undefined && isAlive(pid) && pid;
    }, 30_000, 'a live fence keeper pid');
    fleet.rememberFenceKeeper(again);
    const cmdline = fs.readFileSync(`/proc/${keeper}/cmdline`, 'utf8');
    expect(cmdline).toContain('fence-keeper');
    expect(cmdline).toContain(nodeId);
    note(`restart: fence keeper ${keeper === oldKeeper ? 'kept' : 'replaced'}`);

    // The service runs on this node again (its container may have been replaced while the
    // process was down), and the workflow, assignments.json and the engine agree on it.
    const current = await fleet.waitFor(
      async () => {
        const running = await fleet.containers({ taskId: 'svc', runningOnly: true });
        const entry = (await fleet.assignments()).svc;
        const status = (await client.workflow.getHandle(`gitfleet-node-${nodeId}`).query('status')) as {
          tasks: Array<{ taskId: string; containerId?: string }>;
        };
        const tracked = status.tasks.find((t) => t.taskId === 'svc')?.containerId;
        if (running.length !== 1 || entry?.node_id !== running[0].nodeId || entry.container_id !== running[0].id) {
          return false;
        }
        // Normally the restarted node renews its claim in time and runs svc again; on a loaded
        // machine the restart can outlast the expiry, and then the watcher owns it.
        if (running[0].nodeId === nodeId) return tracked === running[0].id && running[0];
        return running[0].nodeId === watcherId && tracked === undefined && running[0];
      },
      90_000,
      'svc running on one node, as the workflow and assignments.json say',
      500,
    );
    note(`restart: svc running on ${current.nodeId === nodeId ? 'the restarted node' : 'the watcher'} ${Date.now() - restartedAt} ms after restarting (container ${current.id === queried.tasks.find((t) => t.taskId === 'svc')!.containerId ? 'kept' : 'replaced'})`);

    // Renewals continue past a full expiry: the claim stays with this node, one container runs.
    const ownerSeq = async () => {
      const entry = (await fleet.assignments()).svc;
      return { owner: entry?.node_id, seq: Number(entry?.heartbeat_seq ?? -1) };
    };
    const first = await ownerSeq();
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    const later = await ownerSeq();
    expect(later.owner).toBe(current.nodeId);
    expect(later.seq).toBeGreaterThan(first.seq);
    const running = await fleet.containers({ taskId: 'svc', runningOnly: true });
    expect(running.map((c) => [c.id, c.nodeId])).toEqual([[current.id, current.nodeId]]);

    again.kill('SIGTERM');
    watcher.kill('SIGTERM');
    expect(await again.waitExit(60_000)).toEqual({ code: 0, signal: null });
    expect(await watcher.waitExit(60_000)).toEqual({ code: 0, signal: null });
    expect((await identity()).firstRunId).toBe(before.firstRunId);

    await monitor.stop();
    note(`restart: ${monitor.polls} engine polls, ${monitor.runsOf('svc').length} svc container(s) seen`);
    expect(monitor.polls).toBeGreaterThan(50);
    expect(monitor.overlaps).toEqual([]);
    expect(monitor.maxRunningByTask.get('svc')).toBe(1);
    expect(monitor.overlappingRuns('svc')).toEqual([]);
  });
});
