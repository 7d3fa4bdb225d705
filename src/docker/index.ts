export * from './errors';
export * from './labels';
export { checkPolicy, resolveHostPath, BUILT_IMAGE_PREFIX } from './policy';
export type { NodePolicy, PolicyResult, ResolvedMount } from './policy';
export { parseImageReference, imageMatchesPattern } from './image-ref';
export type { ImageReference, ParsedImageReference } from './image-ref';
export { ContainerRuntime } from './runtime';
export type {
  ContainerHealth,
  ContainerRuntimeOptions,
  ManagedContainer,
  StartedTask,
  StartTaskParams,
  StopResult,
  TaskContainerState,
  WaitResult,
} from './runtime';
