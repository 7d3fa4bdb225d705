/**
 * Safety benchmark: contested claims, SIGKILL rounds and remote partitions on
 * a small fleet, with figures taken from the Docker engine's own events.
 * Starts its own Temporal dev server. Run after `npm run build`:
 *
 *   node dist/bench/safety.js
 *
 * Environment: GITFLEET_BENCH_NODES (3), GITFLEET_BENCH_TASKS (9),
 * GITFLEET_BENCH_CRASHES (4), GITFLEET_BENCH_PARTITIONS (2).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startDevServer } from '../src/temporal/dev-server';
import {
  assignments,
  containers,
  FAST,
  FAST_ARGS,
  Fleet,
  held,
  initRepo,
  maxOverlap,
  median,
  runTag,
  serviceTask,
  sleep,
  waitFor,
} from '../test/chaos/harness';
import { CuttableProxy, GitDaemon } from '../test/chaos/netfault';

const NODES = Number(process.env.GITFLEET_BENCH_NODES ?? 3);
const TASKS = Number(process.env.GITFLEET_BENCH_TASKS ?? 9);
const CRASHES = Number(process.env.GITFLEET_BENCH_CRASHES ?? 4);
const PARTITIONS = Number(process.env.GITFLEET_BENCH_PARTITIONS ?? 2);
const EXPIRY_MS = FAST.expiryS * 1000;

function seconds(ms: number): string {
  return Number.isFinite(ms) ? `${(ms / 1000).toFixed(1)} s` : 'n/a';
}

async function allRunning(bare: string, taskIds: string[], nodes: string[]): Promise<boolean> {
  const claims = held(await assignments(bare));
  const running = (await containers(nodes)).filter((c) => c.running);
  return taskIds.every((t) => claims.get(t)?.status === 'running') && running.length === taskIds.length;
}

async function claimsAndCrashes(address: string): Promise<string[]> {
  const fleet = new Fleet(address, 'gitfleet-bench-');
  try {
    const tag = runTag('bk');
    const bare = path.join(fleet.dir, 'control.git');
    const taskIds = Array.from({ length: TASKS }, (_, i) => `${tag}-t${i}`);
    await initRepo(bare, taskIds.map(serviceTask));
    await fleet.recorder.start();
    const nodes = Array.from({ length: NODES }, (_, i) => `${tag}n${i}`);
    for (const id of nodes) fleet.start(id, { repo: bare });
    await waitFor('all tasks running', () => allRunning(bare, taskIds, nodes), 240_000, 1000);
    const claimsWon = nodes.map((id) => (fleet.log(id).match(/"msg":"task claimed"/g) ?? []).length).reduce((a, b) => a + b, 0);
    const claimsLost = nodes.map((id) => (fleet.log(id).match(/"msg":"claim attempt lost"/g) ?? []).length).reduce((a, b) => a + b, 0);
    const doubleAfterClaims = countDoubles(fleet);

    const takeovers: number[] = [];
    let leaked = 0;
    let crashes = 0;
    for (let round = 0; round < CRASHES; round++) {
      await sleep(Math.random() * 4000);
      const claims = held(await assignments(bare));
      const candidates = nodes.filter((id) => [...claims.values()].some((c) => c.node_id === id));
      if (candidates.length === 0) break;
      const victim = candidates[Math.floor(Math.random() * candidates.length)];
      const victimClaims = [...claims].filter(([, c]) => c.node_id === victim);
      const killedAt = Date.now();
      await fleet.kill(victim, 'SIGKILL');
      crashes++;
      for (const [taskId, claim] of victimClaims) {
        const at = await waitFor(`takeover of ${taskId}`, async () => {
          const c = (await assignments(bare))[taskId];
          return c?.node_id && c.node_id !== victim && c.epoch !== claim.epoch && c.status === 'running' ? Date.now() : false;
        }, EXPIRY_MS + 60_000, 200).catch(() => NaN);
        takeovers.push(at - killedAt);
      }
      // Containers of the dead node still running once its fence time is well past count as leaked.
      const fenceDue = killedAt + 0.6 * EXPIRY_MS + 5_000;
      if (Date.now() < fenceDue) await sleep(fenceDue - Date.now());
      leaked += (await containers([victim])).filter((c) => c.running).length;
      fleet.start(victim);
      await waitFor('fleet settled', () => allRunning(bare, taskIds, nodes), EXPIRY_MS + 90_000, 1000).catch(() => undefined);
    }
    const overlap = fleet.recorder.maxOverlap();
    return [
      `fleet: ${NODES} nodes, ${TASKS} service tasks; settings ${FAST_ARGS.join(' ')} (self-fence ${0.6 * FAST.expiryS} s)`,
      `contested claims: ${claimsWon} won + ${claimsLost} lost races = ${claimsWon + claimsLost} claim attempts; double runs: ${doubleAfterClaims} tasks with overlapping runs`,
      `crashes: ${crashes} SIGKILL rounds; containers leaked (still running 0.6 x expiry + 5 s after the kill): ${leaked}`,
      `takeover after SIGKILL: median ${seconds(median(takeovers))}, max ${seconds(Math.max(...takeovers))} over ${takeovers.length} claims`,
      `max overlap of two runs of one task (engine events, claims + crashes): ${overlap.ms.toFixed(0)} ms; ${fleet.recorder.starts} container starts`,
    ];
  } finally {
    await fleet.cleanup();
  }
}

function countDoubles(fleet: Fleet): number {
  const runs = [...fleet.recorder.intervals.values()];
  const byTask = new Map<string, typeof runs>();
  for (const r of runs) byTask.set(r.task, [...(byTask.get(r.task) ?? []), r]);
  let doubles = 0;
  for (const list of byTask.values()) if (maxOverlap(list).ms > 0) doubles++;
  return doubles;
}

async function partitions(address: string): Promise<string[]> {
  const takeovers: number[] = [];
  const fences: number[] = [];
  let worst = 0;
  for (let round = 0; round < PARTITIONS; round++) {
    const fleet = new Fleet(address, 'gitfleet-bench-cut-');
    const daemon = new GitDaemon(fleet.dir);
    let proxy: CuttableProxy | undefined;
    try {
      const tag = runTag('bp');
      const bare = path.join(fleet.dir, 'control.git');
      const taskId = `${tag}-svc`;
      await initRepo(bare, [serviceTask(taskId)]);
      await daemon.start();
      proxy = new CuttableProxy(daemon.port);
      await proxy.start();
      await fleet.recorder.start();
      const cut = `${tag}c`;
      fleet.start(cut, { repo: daemon.url(proxy.port) });
      const first = await waitFor('cut node runs the task', async () => {
        const c = held(await assignments(bare)).get(taskId);
        return c?.node_id === cut && c.status === 'running' ? c : false;
      }, 120_000, 500);
      const others = Array.from({ length: Math.max(1, NODES - 1) }, (_, i) => `${tag}o${i}`);
      for (const id of others) fleet.start(id, { repo: daemon.url() });
      await sleep(5000);
      const cutAt = Date.now();
      await proxy.cut(round % 2 === 0 ? 'refuse' : 'blackhole');
      const at = await waitFor('takeover', async () => {
        const c = held(await assignments(bare)).get(taskId);
        return c?.node_id && c.node_id !== cut && (c.epoch ?? 0) > (first.epoch ?? 0) && c.status === 'running' ? Date.now() : false;
      }, EXPIRY_MS + 60_000, 200).catch(() => NaN);
      takeovers.push(at - cutAt);
      const stop = [...fleet.recorder.intervals.values()].find((r) => r.node === cut && r.endMs !== undefined)?.endMs;
      if (stop !== undefined) fences.push(stop - cutAt);
      await proxy.restore();
      await sleep(3000);
      worst = Math.max(worst, fleet.recorder.maxOverlap().ms);
    } finally {
      await proxy?.stop();
      await fleet.cleanup();
      daemon.stop();
    }
  }
  return [
    `partitions: ${PARTITIONS} cuts of the owner's link (refuse / never answer), ${NODES} nodes`,
    `owner stopped its container after the cut: median ${seconds(median(fences))}, max ${seconds(Math.max(...fences))}`,
    `takeover after a partition: median ${seconds(median(takeovers))}, max ${seconds(Math.max(...takeovers))}`,
    `max overlap of two runs of one task across partitions: ${worst.toFixed(0)} ms`,
  ];
}

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gitfleet-bench-temporal-'));
  const server = await startDevServer({ dataDir, ui: false });
  const began = Date.now();
  try {
    const lines = [...(await claimsAndCrashes(server.address)), ...(await partitions(server.address))];
    console.log('gitfleet safety benchmark');
    for (const line of lines) console.log(`  ${line}`);
    console.log(`  total time: ${seconds(Date.now() - began)}`);
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
