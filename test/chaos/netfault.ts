/**
 * A git daemon on 127.0.0.1 and a TCP proxy in front of it whose link can be
 * cut: `refuse` closes every connection and the listening socket (connects
 * are refused), `blackhole` accepts and never answers.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { freePort, sleep, waitFor } from './harness';

export class GitDaemon {
  child?: ChildProcess;
  port = 0;

  constructor(readonly baseDir: string) {}

  async start(): Promise<void> {
    this.port = await freePort();
    const log = fs.openSync(`${this.baseDir}/git-daemon.log`, 'a');
    this.child = spawn(
      'git',
      ['daemon', '--export-all', `--base-path=${this.baseDir}`, '--listen=127.0.0.1', `--port=${this.port}`, '--enable=receive-pack', '--reuseaddr', this.baseDir],
      // Own process group: `git daemon` runs git-daemon as a child, and stop() ends both.
      { stdio: ['ignore', log, log], detached: true },
    );
    fs.closeSync(log);
    await waitFor('git daemon listening', () => canConnect(this.port), 15_000, 200);
  }

  url(port = this.port): string {
    return `git://127.0.0.1:${port}/control.git`;
  }

  stop(): void {
    if (!this.child?.pid) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export type LinkMode = 'pass' | 'refuse' | 'blackhole';

export class CuttableProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  mode: LinkMode = 'pass';
  port = 0;

  constructor(private readonly targetPort: number) {}

  async start(port?: number): Promise<void> {
    this.port = port ?? (await freePort());
    const server = net.createServer((client) => this.onClient(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  private onClient(client: net.Socket): void {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    if (this.mode === 'blackhole') return; // accepted, never answered
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    this.sockets.add(upstream);
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.on('data', (d) => {
      if (this.mode === 'pass') upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (this.mode === 'pass') client.write(d);
    });
  }

  /** Cut the link: drop every open connection; refuse or swallow new ones. */
  async cut(mode: 'refuse' | 'blackhole'): Promise<void> {
    this.mode = mode;
    if (mode === 'refuse') {
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
      this.server = undefined;
    } else {
      // Open connections go silent: nothing is forwarded any more either way.
    }
  }

  /** Bring the link back on the same port. */
  async restore(): Promise<void> {
    const wasRefusing = this.server === undefined;
    this.mode = 'pass';
    for (const s of this.sockets) s.destroy();
    if (wasRefusing) {
      for (let i = 0; i < 20; i++) {
        try {
          await this.start(this.port);
          return;
        } catch {
          await sleep(250);
        }
      }
      throw new Error(`could not listen again on 127.0.0.1:${this.port}`);
    }
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

function ip(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += String(chunk)));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ip ${args.join(' ')} failed (${code}): ${stderr.trim()}`))));
  });
}

/**
 * A git daemon inside a network namespace made for the test, reachable from
 * this namespace over two veth links, `a` and `b`, each a /30 of its own in
 * 10.231.0.0/16. Cutting a link sets its host end down, so only the node
 * that uses that link loses the remote.
 */
export class NetnsRemote {
  private readonly suffix = Math.random().toString(16).slice(2, 7);
  private readonly namespace = `gfns-${this.suffix}`;
  private readonly subnet = 16 + Math.floor(Math.random() * 200);
  private child?: ChildProcess;
  private created = false;

  constructor(readonly baseDir: string) {}

  private hostEnd(link: 'a' | 'b'): string {
    return `gf${link}${this.suffix}`;
  }

  private address(link: 'a' | 'b', side: 'host' | 'remote'): string {
    const base = link === 'a' ? 0 : 4;
    return `10.231.${this.subnet}.${base + (side === 'host' ? 1 : 2)}`;
  }

  async start(): Promise<void> {
    await ip(['netns', 'add', this.namespace]);
    this.created = true;
    await ip(['-n', this.namespace, 'link', 'set', 'lo', 'up']);
    for (const link of ['a', 'b'] as const) {
      const host = this.hostEnd(link);
      const peer = `gf${link.toUpperCase()}${this.suffix}`;
      await ip(['link', 'add', host, 'type', 'veth', 'peer', 'name', peer]);
      await ip(['link', 'set', peer, 'netns', this.namespace]);
      await ip(['addr', 'add', `${this.address(link, 'host')}/30`, 'dev', host]);
      await ip(['-n', this.namespace, 'addr', 'add', `${this.address(link, 'remote')}/30`, 'dev', peer]);
      await ip(['link', 'set', host, 'up']);
      await ip(['-n', this.namespace, 'link', 'set', peer, 'up']);
    }
    const log = fs.openSync(`${this.baseDir}/git-daemon-netns.log`, 'a');
    this.child = spawn(
      'ip',
      [
        'netns', 'exec', this.namespace,
        'git', 'daemon', '--export-all', `--base-path=${this.baseDir}`,
        `--listen=${this.address('a', 'remote')}`, `--listen=${this.address('b', 'remote')}`,
        '--port=9418', '--enable=receive-pack', '--reuseaddr', this.baseDir,
      ],
      { stdio: ['ignore', log, log], detached: true },
    );
    fs.closeSync(log);
    await waitFor('git daemon in the namespace', () => canConnectTo(this.address('a', 'remote'), 9418), 15_000, 200);
  }

  url(link: 'a' | 'b'): string {
    return `git://${this.address(link, 'remote')}/control.git`;
  }

  cut(link: 'a' | 'b'): Promise<void> {
    return ip(['link', 'set', this.hostEnd(link), 'down']);
  }

  restore(link: 'a' | 'b'): Promise<void> {
    return ip(['link', 'set', this.hostEnd(link), 'up']);
  }

  async stop(): Promise<void> {
    if (this.child?.pid) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    // Deleting the namespace also deletes both veth pairs.
    if (this.created) await ip(['netns', 'del', this.namespace]).catch(() => undefined);
  }
}

function canConnectTo(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
