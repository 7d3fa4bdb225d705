/** A Docker engine call that got no response within its time limit, so its request was aborted. */
export class DockerTimeoutError extends Error {
  override readonly name = 'DockerTimeoutError';

  constructor(
    readonly operation: string,
    readonly target: string,
    readonly timeoutMs: number,
  ) {
    super(
      `Docker ${operation} timed out: ${target} (no answer from the engine after ${timeoutMs} ms); ` +
        'check that dockerd is responsive (`docker info`) and retry',
    );
  }
}

/** The Docker engine socket is missing, refuses connections or cannot be opened. */
export class DockerUnavailableError extends Error {
  override readonly name = 'DockerUnavailableError';

  constructor(
    readonly operation: string,
    readonly code: string,
    detail: string,
  ) {
    const fix =
      code === 'EACCES' || code === 'EPERM'
        ? 'run gitfleet as a user allowed to open the Docker socket (root or the docker group)'
        : 'start dockerd or set DOCKER_HOST to a reachable engine socket';
    super(`Docker ${operation} failed: engine unavailable (${code}: ${detail}); ${fix}`);
  }
}

/** An image that is not present locally and could not be pulled. */
export class ImageNotFoundError extends Error {
  override readonly name = 'ImageNotFoundError';

  constructor(
    readonly image: string,
    reason: string,
  ) {
    super(
      `Image not found: ${image} is not present locally and the pull failed (${reason}); ` +
        'build it on this node (docker build -t ' +
        `${image} ...) or fix the image reference in the task spec`,
    );
  }
}

/** An image build from a task's context directory that failed. */
export class ImageBuildError extends Error {
  override readonly name = 'ImageBuildError';

  constructor(
    readonly image: string,
    readonly contextDir: string,
    detail: string,
  ) {
    super(
      `Image build failed: ${image} from ${contextDir}: ${detail}; ` +
        'fix the Dockerfile or the build context and retry',
    );
  }
}

/** A container spec that the node's policy rejects, with one message per violation in `errors`. */
export class ContainerPolicyError extends Error {
  override readonly name = 'ContainerPolicyError';

  constructor(
    readonly taskId: string,
    readonly errors: string[],
  ) {
    super(`Container spec rejected by node policy: task ${taskId}: ${errors.join('; ')}`);
  }
}

/** A container name already used by a container that another node, task or epoch owns. */
export class ContainerNameConflictError extends Error {
  override readonly name = 'ContainerNameConflictError';

  constructor(
    readonly containerName: string,
    readonly existingId: string,
    owner: string,
  ) {
    super(
      `Container create failed: name ${containerName} is taken by container ` +
        `${existingId.slice(0, 12)} (${owner}); remove that container if it is stale ` +
        `(docker rm -f ${containerName}) and retry`,
    );
  }
}

/** A container that was created but failed to start. It has been removed again. */
export class ContainerStartError extends Error {
  override readonly name = 'ContainerStartError';

  constructor(
    readonly containerName: string,
    detail: string,
    readonly statusCode?: number,
  ) {
    super(
      `Container start failed: ${containerName}: ${detail}; ` +
        'check the image, command and entrypoint in the task spec',
    );
  }
}

/**
 * A bind mount source lies inside a folder that a running task container can
 * write. That task could swap a folder on the path for a symlink between the
 * check and the mount, so the start is refused for now.
 */
export class MountRaceError extends Error {
  override readonly name = 'MountRaceError';

  constructor(
    readonly taskId: string,
    readonly source: string,
    readonly writerTaskId: string,
    readonly writerSource: string,
  ) {
    super(
      `Cannot start task ${taskId}: mount source ${source} is inside ${writerSource}, which task ` +
        `${writerTaskId} mounts writable and could replace with a symlink; mount it read-only in ` +
        `${writerTaskId} or use a folder outside it`,
    );
  }
}
