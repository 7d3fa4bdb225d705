import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogger } from './util/logger';
import { redactUrl } from './util/redact';
import { initControlRepo, temporaryRepo } from './commands/repo-ops';
import { buildStatus, renderStatus } from './commands/status';
import { addTask, removeTask } from './commands/tasks';
import { validatePath } from './commands/validate';
import { parseSettings } from './state/control-files';
import { temporalConnectError } from './temporal/connect-error';
import type { SettingsOverrides } from './core/settings';

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number of seconds, got "${value}"`);
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive whole number, got "${value}"`);
  return n;
}

function nonNegativeSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected zero or more seconds, got "${value}"`);
  return n;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number, got "${value}"`);
  return n;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Connect to Temporal, naming the address and the flag to fix when that fails. */
async function connectTemporal(address: string) {
  const { Connection } = await import('@temporalio/client');
  try {
    return await Connection.connect({ address, connectTimeout: 10_000 });
  } catch (err) {
    throw temporalConnectError(address, err);
  }
}

const program = new Command();
program
  .name('gitfleet')
  .description('Run a fleet of nodes that share work through a git control repo; each task runs in a Docker container.')
  .showHelpAfterError();

const repoOption = () =>
  new Option('--repo <url>', 'control repo: a git remote URL or a local path to a bare repository').env('GITFLEET_REPO').makeOptionMandatory();
const branchOption = () => new Option('--branch <name>', 'branch of the control repo').default('main');

program
  .command('init')
  .description('Create schedule.json, roster.json, assignments.json and fleet.json where missing (creates a bare repo at a local path that does not exist)')
  .addOption(repoOption())
  .addOption(branchOption())
  .option('--schedule <file>', 'seed schedule.json from this file instead of an empty schedule')
  .option('--settings <file>', 'seed fleet.json from this file ({"settings": {...}}, durations in seconds)')
  .action(async (opts) => {
    const logger = createLogger('gitfleet');
    const seed: Record<string, unknown> = {};
    if (opts.settings) {
      const bytes = fs.readFileSync(opts.settings);
      const parsed = parseSettings(bytes);
      if (!parsed.ok) {
        console.error(parsed.error.message.replace(/^fleet\.json/, opts.settings));
        process.exitCode = 1;
        return;
      }
      seed['fleet.json'] = JSON.parse(bytes.toString('utf8'));
    }
    if (opts.schedule) {
      const problems = validatePath(opts.schedule);
      if (problems.length > 0) {
        for (const p of problems) console.error(p);
        process.exitCode = 1;
        return;
      }
      seed['schedule.json'] = JSON.parse(fs.readFileSync(opts.schedule, 'utf8'));
    }
    const created = await initControlRepo(opts.repo, opts.branch, logger, seed);
    console.log(created.length ? `created ${created.join(', ')} in ${redactUrl(opts.repo)}` : 'all control files already exist; nothing changed');
  });

program
  .command('node')
  .description('Run a node: claim tasks from the control repo and run them in containers until drained (SIGINT or SIGTERM drains)')
  .addOption(repoOption())
  .addOption(branchOption())
  .option('--id <name>', 'node id; stored in the work folder and reused on restart (default: hostname plus a random suffix)')
  .option('--roles <list>', 'comma-separated roles this node offers for tasks with required_role', list, [])
  .option('--temporal-address <host:port>', 'Temporal frontend address', '127.0.0.1:7233')
  .option('--namespace <name>', 'Temporal namespace', 'default')
  .option('--workdir <dir>', 'folder for the node id, clone and lease file (default: ~/.gitfleet/nodes/<id>)')
  .option('--max-tasks <n>', 'most tasks this node runs at once', positiveInt, 8)
  .option('--roster-heartbeat <s>', 'seconds between roster heartbeats (fleet default 30)', seconds)
  .option('--task-heartbeat <s>', 'seconds between task heartbeats (fleet default 10)', seconds)
  .option('--task-expiry <s>', 'seconds a task heartbeat may stay unchanged before others take the task (fleet default 45)', seconds)
  .option('--idle-poll <s>', 'seconds between looks for work while idle (fleet default 5)', seconds)
  .option('--claim-jitter <s>', 'largest random delay before a claim, in seconds (fleet default 1)', nonNegativeSeconds)
  .option('--allow-mount <path>', 'host path prefix tasks may bind-mount (repeatable; none by default)', collect)
  .option('--allow-image <pattern>', 'image tasks may use: exact name, or prefix ending in / or * (repeatable; any image by default)', collect)
  .option('--max-memory <MiB>', 'largest memory limit a task may ask for, in MiB', positive)
  .option('--max-cpus <n>', 'largest CPU limit a task may ask for, in CPUs', positive)
  .option('--default-memory <MiB>', 'memory limit for tasks that set none, in MiB', positive)
  .option('--default-cpus <n>', 'CPU limit for tasks that set none, in CPUs', positive)
  .option('--secrets-file <file>', 'JSON object of secret names to values (GITFLEET_SECRET_<NAME> variables also work)')
  .addOption(new Option('--history-limit <events>', 'continue the node workflow as new past this many history events').argParser(positiveInt).hideHelp())
  .option('--build-root <dir>', 'folder that build contexts in task specs are relative to', process.cwd())
  .action(async (opts) => {
    const { runNode } = await import('./node/run-node');
    const logger = createLogger('gitfleet-node');
    const id: string | undefined = opts.id;
    const workdir = opts.workdir ?? path.join(os.homedir(), '.gitfleet', 'nodes', id ?? 'default');
    const overrides: SettingsOverrides = {
      roster_heartbeat_s: opts.rosterHeartbeat,
      task_heartbeat_s: opts.taskHeartbeat,
      task_expiry_s: opts.taskExpiry,
      idle_poll_s: opts.idlePoll,
      claim_jitter_s: opts.claimJitter,
    };
    await runNode({
      repo: opts.repo,
      branch: opts.branch,
      id,
      roles: opts.roles,
      temporalAddress: opts.temporalAddress,
      namespace: opts.namespace,
      workdir,
      maxTasks: opts.maxTasks,
      overrides,
      policy: {
        allowedMounts: opts.allowMount ?? [],
        allowedImages: opts.allowImage?.length ? opts.allowImage : undefined,
        maxMemoryMb: opts.maxMemory,
        maxCpus: opts.maxCpus,
        defaultMemoryMb: opts.defaultMemory,
        defaultCpus: opts.defaultCpus,
      },
      secretsFile: opts.secretsFile,
      contextRoot: path.resolve(opts.buildRoot),
      historyLimit: opts.historyLimit,
      logger,
    });
  });

const task = program.command('task').description('Edit schedule.json through the same push loop the nodes use');

task
  .command('add')
  .description('Add a task to schedule.json')
  .addOption(repoOption())
  .addOption(branchOption())
  .requiredOption('--id <id>', 'task id: letters, digits, ".", "_" or "-"')
  .option('--type <type>', 'task type; names a container spec under "types" when the task has no --image', 'default')
  .option('--priority <n>', 'priority; lower numbers run first', (v) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got "${v}"`);
    return n;
  }, 100)
  .option('--image <ref>', 'container image')
  .addOption(new Option('--kind <kind>', 'service (kept running) or batch (runs once)').choices(['service', 'batch']))
  .option('--role <role>', 'required_role: only nodes with this role run the task')
  .option('--env <KEY=VALUE>', 'environment variable for the container (repeatable)', collect)
  .option('--json <file>', 'read the whole task entry from a JSON file; other options override its fields')
  .argument('[command...]', 'command and arguments to run in the container (after --)')
  .action(async (command: string[], opts) => {
    const logger = createLogger('gitfleet');
    let entry: Record<string, unknown> = {};
    if (opts.json) entry = JSON.parse(fs.readFileSync(opts.json, 'utf8'));
    entry.id = opts.id;
    entry.type = entry.type ?? opts.type;
    entry.priority = opts.priority ?? entry.priority;
    if (opts.image) entry.image = opts.image;
    if (opts.kind) entry.kind = opts.kind;
    if (opts.role) entry.required_role = opts.role;
    if (command.length) entry.command = command;
    if (opts.env?.length) {
      const env: Record<string, string> = { ...((entry.env as Record<string, string>) ?? {}) };
      for (const pair of opts.env as string[]) {
        const at = pair.indexOf('=');
        if (at <= 0) throw new InvalidArgumentError(`--env expects KEY=VALUE, got "${pair}"`);
        env[pair.slice(0, at)] = pair.slice(at + 1);
      }
      entry.env = env;
    }
    const repo = temporaryRepo(opts.repo, opts.branch, logger);
    try {
      await addTask(repo, entry);
      console.log(`added task ${opts.id}`);
    } finally {
      repo.dispose();
    }
  });

task
  .command('remove')
  .description('Remove a task from schedule.json; its node stops the container at its next heartbeat')
  .addOption(repoOption())
  .addOption(branchOption())
  .requiredOption('--id <id>', 'task id')
  .action(async (opts) => {
    const repo = temporaryRepo(opts.repo, opts.branch, createLogger('gitfleet'));
    try {
      await removeTask(repo, opts.id);
      console.log(`removed task ${opts.id}`);
    } finally {
      repo.dispose();
    }
  });

program
  .command('status')
  .description('Show nodes (state, last-seen age) and tasks (owner, status, heartbeat age) from the control repo')
  .addOption(repoOption())
  .addOption(branchOption())
  .option('--json', 'print the status as JSON')
  .action(async (opts) => {
    const repo = temporaryRepo(opts.repo, opts.branch, createLogger('gitfleet'));
    try {
      const report = buildStatus(await repo.snapshot());
      console.log(opts.json ? JSON.stringify(report, null, 2) : renderStatus(report));
    } finally {
      repo.dispose();
    }
  });

program
  .command('validate')
  .description('Check a schedule file, a control repo folder or a remote (--repo) before pushing; exits 1 on any problem')
  .argument('[path]', 'schedule.json file or a folder holding the control files')
  .option('--repo <url>', 'check the branch of this remote instead of a local path')
  .addOption(branchOption())
  .action(async (target: string | undefined, opts) => {
    let problems: string[];
    if (opts.repo) {
      const repo = temporaryRepo(opts.repo, opts.branch, createLogger('gitfleet'));
      try {
        problems = buildStatus(await repo.snapshot()).problems;
      } finally {
        repo.dispose();
      }
    } else {
      problems = validatePath(target ?? '.');
    }
    const checked = opts.repo ? `${redactUrl(opts.repo)} (branch ${opts.branch})` : (target ?? '.');
    for (const p of problems) console.error(p);
    if (problems.length > 0) {
      console.error(`${checked}: ${problems.length} problem${problems.length === 1 ? '' : 's'} found`);
      process.exitCode = 1;
    } else {
      console.log(`${checked}: valid`);
    }
  });

program
  .command('drain')
  .description('Ask a running node to stop claiming, release its tasks and stop')
  .requiredOption('--id <name>', 'node id')
  .option('--temporal-address <host:port>', 'Temporal frontend address', '127.0.0.1:7233')
  .option('--namespace <name>', 'Temporal namespace', 'default')
  .option('--wait', 'wait until the node has stopped')
  .action(async (opts) => {
    const { Client } = await import('@temporalio/client');
    const { nodeWorkflowId } = await import('./core/types');
    const connection = await connectTemporal(opts.temporalAddress);
    try {
      const handle = new Client({ connection, namespace: opts.namespace }).workflow.getHandle(nodeWorkflowId(opts.id));
      try {
        await handle.signal('drain', { reason: 'gitfleet drain' });
      } catch (err) {
        if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
        throw new Error(
          `no running node ${opts.id} in namespace ${opts.namespace} at ${opts.temporalAddress}; check --id (see \`gitfleet status\`), --namespace and --temporal-address`,
        );
      }
      console.log(`drain requested for node ${opts.id}`);
      if (opts.wait) {
        await handle.result();
        console.log(`node ${opts.id} stopped`);
      }
    } finally {
      await connection.close();
    }
  });

program
  .command('demo')
  .description('Run the embedded demo: local Temporal dev server, bare control repo, three nodes, real containers')
  .option('--keep', 'leave the demo folder in place afterwards')
  .option('--expiry <s>', 'task expiry for the demo fleet, in seconds', seconds, 15)
  .action(async (opts) => {
    const { runDemo } = await import('./demo/demo');
    // Exit at once: the demo's own clients may keep idle sockets open for a while.
    process.exit(await runDemo({ keep: Boolean(opts.keep), expiryS: opts.expiry }));
  });

program
  .command('fence-keeper', { hidden: true })
  .requiredOption('--lease <file>')
  .requiredOption('--id <name>')
  .requiredOption('--node-pid <pid>', 'process id of the node', positiveInt)
  .action(async (opts) => {
    const { runFenceKeeper } = await import('./node/fence-keeper');
    await runFenceKeeper(opts.lease, opts.id, opts.nodePid);
  });

program.parseAsync(process.argv).catch((err: Error) => {
  console.error(`gitfleet: ${redactUrl(err.message)}`);
  process.exit(1);
});
