/**
 * Service restart policies and budgets: a service that keeps failing is
 * restarted on its node up to max_restarts, then handed back with a growing
 * delay, and given up after reschedule_limit hand-backs. A service under the
 * on-failure policy that exits 0 ends as succeeded, and one whose HTTP health
 * check keeps failing is restarted.
 */
import { Fleet, serviceTask } from '../support/fleet';

jest.setTimeout(240_000);

describe('service restart policy', () => {
  const fleet = new Fleet('policy');
  const nodeId = fleet.nodeId('keeper');

  beforeAll(async () => {
    await fleet.initRepo(
      {
        tasks: [
          serviceTask('crashy', ['sh', '-c', 'echo crashing; exit 4'], {
            restart_policy: { policy: 'always', max_restarts: 2, backoff_s: 0.2 },
          }),
          serviceTask('oneshot', ['sh', '-c', 'echo finished cleanly'], {
            restart_policy: { policy: 'on-failure', max_restarts: 3, backoff_s: 0.2 },
          }),
          serviceTask('deaf', ['sleep', '3600'], {
            ports: [{ container: 8080 }],
            health_check: { type: 'http', port: 8080, path: '/', interval_s: 1, timeout_s: 1, retries: 2, start_period_s: 0 },
            restart_policy: { policy: 'always', max_restarts: 1, backoff_s: 0.2 },
          }),
        ],
      },
      { reschedule_limit: 1 },
    );
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test('budgets end in failed, clean exit in succeeded', async () => {
    const monitor = await fleet.monitor(200);
    fleet.startNode(nodeId);

    const oneshot = await fleet.waitFor(
      async () => {
        const entry = (await fleet.assignments()).oneshot;
        return entry?.status === 'succeeded' ? entry : undefined;
      },
      90_000,
      'oneshot succeeded',
    );
    expect(oneshot.exit_code).toBe(0);
    expect(oneshot.last_log).toContain('finished cleanly');
    expect(monitor.runsOf('oneshot')).toHaveLength(1);

    const crashy = await fleet.waitFor(
      async () => {
        const entry = (await fleet.assignments()).crashy;
        return entry?.status === 'failed' ? entry : undefined;
      },
      150_000,
      'crashy given up',
    );
    expect(crashy.given_up).toBe(true);
    expect(crashy.reschedules).toBe(2);
    expect(crashy.exit_code).toBe(4);
    expect(crashy.last_error).toContain('exit code 4');
    // Two claims (the first and the one after the hand-back), each with the
    // first run plus two restarts.
    expect(monitor.runsOf('crashy')).toHaveLength(6);
    expect(crashy.epoch).toBe(2);

    const deafRuns = await fleet.waitFor(
      () => (monitor.runsOf('deaf').length >= 2 ? monitor.runsOf('deaf') : undefined),
      90_000,
      'deaf restarted after failed health checks',
    );
    expect(deafRuns.length).toBeGreaterThanOrEqual(2);
    expect(monitor.overlappingRuns('deaf')).toEqual([]);
  });
});
