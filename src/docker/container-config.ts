import type Dockerode from 'dockerode';
import type { ContainerSpec } from '../state/schemas';
import type { ResolvedMount } from './policy';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** The only host address task ports are published on. */
export const PUBLISH_HOST_IP = '127.0.0.1';

export interface PublishedPort {
  container: number;
  /** 0 lets the engine choose a free host port. */
  host: number;
  protocol: 'tcp' | 'udp';
}

export interface CreateOptionsInput {
  image: string;
  labels: Record<string, string>;
  spec: ContainerSpec;
  env: Record<string, string>;
  memoryBytes?: number;
  nanoCpus?: number;
  mounts: ResolvedMount[];
}

/**
 * Lists the ports to publish: the spec's ports, plus the HTTP health check port when the spec
 * does not publish it, because the health check reaches the container through the host.
 */
export function portsToPublish(spec: ContainerSpec): PublishedPort[] {
  const ports: PublishedPort[] = (spec.ports ?? []).map((port) => ({
    container: port.container,
    host: port.host ?? 0,
    protocol: port.protocol ?? 'tcp',
  }));

  const health = spec.health_check;
  if (health?.type === 'http') {
    const published = ports.some((p) => p.container === health.port && p.protocol === 'tcp');
    if (!published) {
      ports.push({ container: health.port, host: 0, protocol: 'tcp' });
    }
  }
  return ports;
}

/**
 * Merges the spec's environment with the caller's (the caller wins) into Docker's `KEY=value`
 * list. Values are passed to the engine as JSON data and never through a shell.
 */
export function environmentList(
  specEnv: Record<string, string> | undefined,
  extraEnv: Record<string, string>,
): string[] {
  const merged = { ...(specEnv ?? {}), ...extraEnv };
  return Object.entries(merged).map(([name, value]) => {
    if (!ENV_NAME.test(name)) {
      throw new Error(
        `Invalid environment variable name: "${name}"; use letters, digits and _, ` +
          'not starting with a digit',
      );
    }
    if (value.includes('\0')) {
      throw new Error(
        `Invalid environment variable value: ${name} contains a NUL byte, which a process ` +
          'environment cannot carry; remove it',
      );
    }
    return `${name}=${value}`;
  });
}

/** Builds the body of POST /containers/create for a task container. */
export function createOptions(input: CreateOptionsInput): Dockerode.ContainerCreateOptions {
  const { spec } = input;
  const exposedPorts: Record<string, object> = {};
  const portBindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};

  for (const port of portsToPublish(spec)) {
    const key = `${port.container}/${port.protocol}`;
    exposedPorts[key] = {};
    // With an empty HostPort the engine picks a free port.
    const hostPort = port.host === 0 ? '' : String(port.host);
    portBindings[key] = [
      ...(portBindings[key] ?? []),
      { HostIp: PUBLISH_HOST_IP, HostPort: hostPort },
    ];
  }

  return {
    Image: input.image,
    Cmd: spec.command,
    Entrypoint: spec.entrypoint,
    Env: environmentList(spec.env, input.env),
    Labels: input.labels,
    ExposedPorts: exposedPorts,
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    HostConfig: {
      NetworkMode: spec.network_mode ?? 'bridge',
      PortBindings: portBindings,
      Mounts: input.mounts.map((mount) => ({
        Type: 'bind' as const,
        Source: mount.source,
        Target: mount.target,
        ReadOnly: mount.readOnly,
      })),
      Memory: input.memoryBytes,
      NanoCpus: input.nanoCpus,
      Privileged: false,
      CapAdd: [],
      SecurityOpt: ['no-new-privileges'],
      // The engine's init process (docker-init) forwards SIGTERM to the task and reaps
      // zombies, so a stop ends the task at once instead of after the kill timeout.
      Init: true,
      // gitfleet applies the spec's restart policy itself, so the engine never restarts tasks.
      RestartPolicy: { Name: 'no' },
    },
  };
}

/** Maps container ports to the host ports the engine published, from `NetworkSettings.Ports`. */
export function hostPortsFromInspect(
  ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null> | undefined,
): Record<number, number> {
  const result: Record<number, number> = {};
  for (const [key, bindings] of Object.entries(ports ?? {})) {
    const [containerPort, protocol] = key.split('/');
    const binding = bindings?.find((b) => b.HostIp === PUBLISH_HOST_IP) ?? bindings?.[0];
    if (binding === undefined) {
      continue;
    }
    const port = Number(containerPort);
    // A TCP binding wins over a UDP binding of the same container port.
    if (result[port] === undefined || protocol === 'tcp') {
      result[port] = Number(binding.HostPort);
    }
  }
  return result;
}
