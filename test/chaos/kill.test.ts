/**
 * Rounds of SIGKILL at random moments across a 3-node fleet. Each killed node
 * is restarted with the same id and work folder, at once in odd rounds and
 * after the expiry in even rounds. After each round: every task runs exactly
 * once again within the expiry plus a margin, no container lacks a current
 * claim, no clone is left with a lock file or mid-merge, and the engine's
 * events never show two runs of one task overlapping.
 *
 * Default run: 5 rounds. GITFLEET_LONG=1: 30 rounds.
 */
import * as path from 'node:path';
import {
  assignments,
  claimMismatches,
  cloneProblems,
  containers,
  FAST,
  Fleet,
  held,
  indexLock,
  initRepo,
  LONG,
  median,
  runTag,
  serviceTask,
  sleep,
  waitFor,
} from './harness';

const ROUNDS = Number(process.env.GITFLEET_KILL_ROUNDS ?? (LONG ? 30 : 5));
const TASKS = 6;
const EXPIRY_MS = FAST.expiryS * 1000;
// A takeover needs the heartbeat unchanged for the expiry on the taker's clock,
// plus claim polls, pushes and container starts; a node takes one task per claim,
// so the last of several orphaned tasks comes later, more so on a busy 2-core machine.
const TAKEOVER_LIMIT_MS = EXPIRY_MS + 45_000;
const ROUND_LIMIT_MS = 90_000;

jest.setTimeout(60_000 + ROUNDS * ROUND_LIMIT_MS);

describe('SIGKILL rounds on a 3-node fleet', () => {
  const address = process.env.GITFLEET_TEST_TEMPORAL_ADDRESS!;
  let fleet: Fleet;

  beforeAll(() => {
    fleet = new Fleet(address, 'gitfleet-kill-');
  });

  afterAll(async () => {
    await fleet.cleanup();
  });

  test(`${ROUNDS} kill rounds keep at most one run per task`, async () => {
    const tag = runTag('kl');
    const bare = path.join(fleet.dir, 'control.git');
    const taskIds = Array.from({ length: TASKS }, (_, i) => `${tag}-t${i}`);
    await initRepo(bare, taskIds.map(serviceTask));
    await fleet.recorder.start();
    const nodeIds = [0, 1, 2].map((i) => `${tag}n${i}`);
    for (const id of nodeIds) fleet.start(id, { repo: bare });

    const allRunning = async () => {
      const claims = held(await assignments(bare));
      if (!taskIds.every((id) => claims.get(id)?.status === 'running')) return false;
      const running = (await containers(nodeIds)).filter((c) => c.running);
      if (running.length !== TASKS) return false;
      const problems = await claimMismatches(bare, nodeIds);
      return problems.length === 0 ? claims : false;
    };
    await waitFor('all tasks running', allRunning, 180_000, 1000);

    // Sample the engine's container list all along: never two running containers of one task.
    const doubles: string[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const running = (await containers(nodeIds).catch(() => [])).filter((c) => c.running);
        const seen = new Set<string>();
        for (const c of running) {
          if (seen.has(c.task)) doubles.push(`${new Date().toISOString()} ${c.task}`);
          seen.add(c.task);
        }
        await sleep(500);
      }
    })();

    const takeovers: number[] = [];
    const fenceStops: number[] = [];
    const testDeadline = Date.now() + ROUNDS * ROUND_LIMIT_MS;
    let rounds = 0;
    try {
      for (let round = 1; round <= ROUNDS && Date.now() < testDeadline; round++) {
        const roundStart = Date.now();
        await sleep(Math.random() * 5000);
        const alive = nodeIds.filter((id) => fleet.alive(id));
        const victim = alive[Math.floor(Math.random() * alive.length)];
        const before = held(await assignments(bare));
        const victimClaims = [...before].filter(([, c]) => c.node_id === victim);
        const killedAt = Date.now();
        await fleet.kill(victim, 'SIGKILL');
        const restartLater = round % 2 === 0;
        if (!restartLater) {
          await sleep(1000);
          fleet.start(victim);
        }

        // Each claim the victim held runs again (new epoch anywhere, or renewed by the restarted node).
        for (const [taskId, claim] of victimClaims) {
          const back = await waitFor(
            `round ${round}: ${taskId} of ${victim} running again`,
            async () => {
              const c = (await assignments(bare))[taskId];
              if (!c?.node_id || c.status !== 'running') return false;
              const moved = c.epoch !== claim.epoch;
              const renewed = c.node_id === victim && c.epoch === claim.epoch && (c.heartbeat_seq ?? 0) > (claim.heartbeat_seq ?? 0) && fleet.alive(victim);
              if (!moved && !renewed) return false;
              const boxes = (await containers(nodeIds)).filter((b) => b.running && b.task === taskId && b.node === c.node_id && b.epoch === c.epoch);
              return boxes.length === 1 ? { moved, at: Date.now() } : false;
            },
            TAKEOVER_LIMIT_MS,
            250,
          );
          if (back.moved) takeovers.push(back.at - killedAt);
        }
        if (restartLater) fleet.start(victim);

        // The fence keeper of the dead process stops its containers (engine die events).
        for (const run of fleet.recorder.intervals.values()) {
          if (run.node === victim && run.endMs !== undefined && run.endMs >= killedAt && run.endMs - killedAt < 30_000) {
            fenceStops.push(run.endMs - killedAt);
          }
        }

        // Invariants once the expiry has settled.
        await waitFor(`round ${round}: fleet settled`, allRunning, TAKEOVER_LIMIT_MS + 30_000, 1000);
        expect(await claimMismatches(bare, nodeIds)).toEqual([]);
        for (const id of nodeIds) expect(cloneProblems(fleet.workdir(id))).toEqual([]);
        // A lock held by a running git lasts a moment; one seen three times in a row is left over.
        const lockSeen = new Map<string, number>(nodeIds.map((id) => [id, 0]));
        for (let i = 0; i < 3; i++) {
          for (const id of nodeIds) if (indexLock(fleet.workdir(id))) lockSeen.set(id, lockSeen.get(id)! + 1);
          await sleep(700);
        }
        expect([...lockSeen].filter(([, seen]) => seen === 3)).toEqual([]);
        expect(fleet.recorder.maxOverlap().ms).toBe(0);
        expect(doubles).toEqual([]);
        rounds++;
        process.stdout.write(
          `kill round ${round}: ${victim} held ${victimClaims.length}, restarted ${restartLater ? 'after expiry' : 'at once'}, ` +
            `round took ${((Date.now() - roundStart) / 1000).toFixed(1)} s\n`,
        );
      }
    } finally {
      sampling = false;
      await sampler;
    }
    expect(rounds).toBe(ROUNDS);
    const overlap = fleet.recorder.maxOverlap();
    expect(overlap.ms).toBe(0);
    process.stdout.write(
      `kill: ${rounds} rounds, ${takeovers.length} takeovers, takeover after SIGKILL median ${(median(takeovers) / 1000).toFixed(1)} s ` +
        `max ${(Math.max(0, ...takeovers) / 1000).toFixed(1)} s; fence-keeper stops after kill max ${(Math.max(0, ...fenceStops) / 1000).toFixed(1)} s; ` +
        `${fleet.recorder.starts} container starts; max overlap ${overlap.ms} ms\n`,
    );
  });
});
