import * as fs from 'node:fs';

/**
 * Test-only crash points. When GITFLEET_CRASH_AT lists `point`, the first
 * pass through it kills this process with SIGKILL, as a power cut would.
 * GITFLEET_CRASH_MARKER names a file that records the crash, so a restarted
 * process with the same environment does not crash again. Without the
 * variable this does nothing.
 */
export function crashPoint(point: string): void {
  const points = process.env.GITFLEET_CRASH_AT;
  if (!points || !points.split(',').includes(point)) return;
  const marker = process.env.GITFLEET_CRASH_MARKER;
  if (marker) {
    if (fs.existsSync(marker)) return;
    fs.writeFileSync(marker, `${point}\n`);
  }
  process.kill(process.pid, 'SIGKILL');
}
