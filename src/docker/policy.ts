import fs from 'node:fs';
import path from 'node:path';
import type { ContainerSpec } from '../state/schemas';
import { imageMatchesPattern, parseImageReference } from './image-ref';

/** Limits that a node's operator sets on the task containers of this machine. */
export interface NodePolicy {
  /** Host path prefixes that tasks may bind-mount. An empty list allows no host mounts. */
  allowedMounts: string[];
  /**
   * Allowed images: exact references, bare repository names (any tag), or prefixes ending in `/`
   * or `*`. Undefined allows any image.
   */
  allowedImages?: string[];
  maxMemoryMb?: number;
  maxCpus?: number;
  defaultMemoryMb?: number;
  defaultCpus?: number;
}

/** A bind mount after policy checks, with its source resolved through symlinks. */
export interface ResolvedMount {
  source: string;
  target: string;
  readOnly: boolean;
}

export type PolicyResult =
  | { ok: true; memoryBytes?: number; nanoCpus?: number; mounts: ResolvedMount[] }
  | { ok: false; errors: string[] };

/** Reference prefix of images built from a context directory when the spec names no image. */
export const BUILT_IMAGE_PREFIX = 'gitfleet-build/';

const DOCKER_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock'];
const ALLOWED_NETWORK_MODES = new Set(['bridge', 'none']);
const MEBIBYTE = 1024 * 1024;
// Docker engine 20.10 rejects memory limits below 6 MB and CPU limits below 0.01.
const MIN_MEMORY_MB = 6;
const MIN_CPUS = 0.01;

/**
 * Checks a container spec against the node's policy. Every violation is reported and none is
 * trimmed away. On success the result carries the resource limits and resolved mounts to apply.
 */
export function checkPolicy(spec: ContainerSpec, policy: NodePolicy): PolicyResult {
  const errors: string[] = [
    ...checkPrivileges(spec),
    ...checkNetwork(spec),
    ...checkPorts(spec),
    ...checkImage(spec, policy),
  ];

  const mounts = checkMounts(spec, policy, errors);
  const memoryMb = checkMemory(spec, policy, errors);
  const cpus = checkCpus(spec, policy, errors);

  if (errors.length > 0) {
    return { ok: false, errors };
  }
  return {
    ok: true,
    memoryBytes: memoryMb === undefined ? undefined : Math.round(memoryMb * MEBIBYTE),
    nanoCpus: cpus === undefined ? undefined : Math.round(cpus * 1e9),
    mounts,
  };
}

function checkPrivileges(spec: ContainerSpec): string[] {
  const errors: string[] = [];
  if (spec.privileged === true) {
    errors.push(
      'privileged true: privileged containers are not allowed because they control the host; ' +
        'remove "privileged" from the task spec',
    );
  }
  if (spec.cap_add !== undefined && spec.cap_add.length > 0) {
    errors.push(
      `cap_add ${JSON.stringify(spec.cap_add)}: extra capabilities are not allowed; ` +
        'remove "cap_add" from the task spec',
    );
  }
  return errors;
}

/** Host ports below 1024 belong to system services, so a task may not take one. */
function checkPorts(spec: ContainerSpec): string[] {
  const errors: string[] = [];
  (spec.ports ?? []).forEach((port, index) => {
    if (port.host !== undefined && port.host > 0 && port.host < 1024) {
      errors.push(
        `ports[${index}].host ${port.host}: host ports below 1024 are reserved for system services; ` +
          'use 1024 or above, or leave "host" out for a free port',
      );
    }
  });
  return errors;
}

function checkNetwork(spec: ContainerSpec): string[] {
  const errors: string[] = [];
  const mode = spec.network_mode;
  if (mode !== undefined && !ALLOWED_NETWORK_MODES.has(mode)) {
    errors.push(
      `network_mode "${mode}": only "bridge" (the default) and "none" are allowed, because ` +
        'host and container:<id> networking bypass isolation; use "bridge" or "none"',
    );
  }

  if (mode === 'none') {
    if (spec.ports !== undefined && spec.ports.length > 0) {
      errors.push(
        'ports: a container with network_mode "none" cannot publish ports; ' +
          'remove "ports" or use network_mode "bridge"',
      );
    }
    if (spec.health_check?.type === 'http') {
      errors.push(
        'health_check: an HTTP health check needs a published port, which network_mode "none" ' +
          'does not allow; use network_mode "bridge" or health_check type "image"',
      );
    }
  }
  return errors;
}

function checkImage(spec: ContainerSpec, policy: NodePolicy): string[] {
  if (spec.image === undefined) {
    if (spec.build === undefined) {
      return ['image: missing; set "image" or "build" in the task spec'];
    }
    return checkAllowedImage('build', `${BUILT_IMAGE_PREFIX}<content hash>:local`, policy, [
      BUILT_IMAGE_PREFIX,
    ]);
  }

  const parsed = parseImageReference(spec.image);
  if (!parsed.ok) {
    return [`image "${spec.image}": invalid image reference (${parsed.reason}); fix the reference`];
  }
  return checkAllowedImage('image', spec.image, policy, [spec.image]);
}

// `candidates` are the strings matched against the patterns. A built image with no name
// matches when a pattern allows the whole build prefix.
function checkAllowedImage(
  field: string,
  displayedImage: string,
  policy: NodePolicy,
  candidates: string[],
): string[] {
  const allowed = policy.allowedImages;
  if (allowed === undefined) {
    return [];
  }
  const matches = candidates.some((image) =>
    allowed.some((pattern) => imageMatchesPattern(image, pattern)),
  );
  if (matches) {
    return [];
  }
  const list = allowed.length > 0 ? allowed.join(', ') : 'none';
  return [
    `${field} "${displayedImage}": not in the node's allowed images (${list}); ask the node operator ` +
      'to allow it with --allow-image or use an allowed image',
  ];
}

function checkMounts(spec: ContainerSpec, policy: NodePolicy, errors: string[]): ResolvedMount[] {
  const mounts: ResolvedMount[] = [];
  const allowedRoots = policy.allowedMounts.map((prefix) => resolveHostPath(prefix));
  const sockets = dockerSocketPaths();

  (spec.mounts ?? []).forEach((mount, index) => {
    const field = `mounts[${index}].source "${mount.source}"`;
    if (!path.isAbsolute(mount.source)) {
      errors.push(`${field}: not an absolute host path; use an absolute path such as /data/...`);
      return;
    }

    const source = resolveHostPath(mount.source);
    if (sockets.some((socket) => isSameOrInside(socket, source))) {
      errors.push(
        `${field}: exposes the Docker engine socket, which gives the container control of ` +
          'the host; remove the mount',
      );
      return;
    }

    if (!allowedRoots.some((root) => isSameOrInside(source, root))) {
      const list = policy.allowedMounts.length > 0 ? policy.allowedMounts.join(', ') : 'none';
      const resolvedNote = source === mount.source ? '' : ` (resolves to ${source})`;
      errors.push(
        `${field}${resolvedNote}: outside the node's allowed mount paths (${list}); ask the ` +
          'node operator to add it with --allow-mount or remove the mount',
      );
      return;
    }

    mounts.push({ source, target: mount.target, readOnly: mount.read_only === true });
  });
  return mounts;
}

function checkMemory(
  spec: ContainerSpec,
  policy: NodePolicy,
  errors: string[],
): number | undefined {
  const requested = spec.resources?.memory_mb;
  // A cap with no default still limits tasks that ask for nothing.
  const memoryMb = requested ?? policy.defaultMemoryMb ?? policy.maxMemoryMb;
  const field = requested === undefined ? 'node default memory' : 'resources.memory_mb';
  if (memoryMb === undefined) {
    return undefined;
  }

  if (memoryMb < MIN_MEMORY_MB) {
    errors.push(
      `${field} ${memoryMb}: below Docker's minimum of ${MIN_MEMORY_MB} MB; ` +
        `set at least ${MIN_MEMORY_MB}`,
    );
  }
  if (policy.maxMemoryMb !== undefined && memoryMb > policy.maxMemoryMb) {
    errors.push(
      `${field} ${memoryMb}: above the node's maximum of ${policy.maxMemoryMb} MB; ` +
        `lower it to ${policy.maxMemoryMb} or less`,
    );
  }
  return memoryMb;
}

function checkCpus(spec: ContainerSpec, policy: NodePolicy, errors: string[]): number | undefined {
  const requested = spec.resources?.cpus;
  const cpus = requested ?? policy.defaultCpus ?? policy.maxCpus;
  const field = requested === undefined ? 'node default cpus' : 'resources.cpus';
  if (cpus === undefined) {
    return undefined;
  }

  if (cpus < MIN_CPUS) {
    errors.push(
      `${field} ${cpus}: below Docker's minimum of ${MIN_CPUS}; set at least ${MIN_CPUS}`,
    );
  }
  if (policy.maxCpus !== undefined && cpus > policy.maxCpus) {
    errors.push(
      `${field} ${cpus}: above the node's maximum of ${policy.maxCpus} CPUs; ` +
        `lower it to ${policy.maxCpus} or less`,
    );
  }
  return cpus;
}

/**
 * Resolves a host path to an absolute path without `..` and with every existing symlink followed.
 * A missing tail is appended to the real path of its nearest existing ancestor.
 */
export function resolveHostPath(hostPath: string): string {
  const absolute = path.resolve(hostPath);
  const missing: string[] = [];
  let existing = absolute;

  for (;;) {
    try {
      const real = fs.realpathSync(existing);
      return missing.length > 0 ? path.join(real, ...missing.reverse()) : real;
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) {
        return absolute;
      }
      missing.push(path.basename(existing));
      existing = parent;
    }
  }
}

function dockerSocketPaths(): string[] {
  const paths = new Set<string>();
  for (const socket of DOCKER_SOCKETS) {
    paths.add(socket);
    paths.add(resolveHostPath(socket));
  }
  return [...paths];
}

export function isSameOrInside(child: string, parent: string): boolean {
  if (child === parent) {
    return true;
  }
  const prefix = parent.endsWith(path.sep) ? parent : parent + path.sep;
  return child.startsWith(prefix);
}
