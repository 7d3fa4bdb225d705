/**
 * Image reference grammar as the Docker engine accepts it: `[registry[:port]/]path[:tag][@digest]`.
 * Path components are lowercase letters and digits joined by `.`, `_`, `__` or runs of `-`. A tag
 * is up to 128 word characters, dots and dashes. gitfleet accepts only sha256 digests.
 */
export interface ImageReference {
  registry?: string;
  /** Repository path without the registry, e.g. `library/busybox`. */
  path: string;
  tag?: string;
  digest?: string;
}

export type ParsedImageReference =
  { ok: true; reference: ImageReference; name: string } | { ok: false; reason: string };

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
const PORT = /^[0-9]{1,5}$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const NAME_MAX_LENGTH = 255;

/** Parses an image reference. The result's `name` is the reference without tag and digest. */
export function parseImageReference(text: string): ParsedImageReference {
  if (text.length === 0) {
    return { ok: false, reason: 'the reference is empty' };
  }

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      return {
        ok: false,
        reason: `digest "${digest}" is not sha256: followed by 64 lowercase hex digits`,
      };
    }
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      return {
        ok: false,
        reason: `tag "${tag}" must be 1 to 128 letters, digits, "_", "." or "-", not starting with "." or "-"`,
      };
    }
  }

  const name = rest;
  if (name.length === 0) {
    return { ok: false, reason: 'the repository name is empty' };
  }
  if (name.length > NAME_MAX_LENGTH) {
    return {
      ok: false,
      reason: `the repository name is longer than ${NAME_MAX_LENGTH} characters`,
    };
  }

  const components = name.split('/');
  let registry: string | undefined;
  // Like the engine, treat the first component as a registry host only when it cannot be a path.
  if (components.length > 1 && looksLikeRegistry(components[0])) {
    registry = components.shift();
    const registryProblem = checkRegistry(registry as string);
    if (registryProblem) {
      return { ok: false, reason: registryProblem };
    }
  }

  for (const component of components) {
    if (!PATH_COMPONENT.test(component)) {
      const hint =
        component.toLowerCase() !== component
          ? 'repository names must be lowercase'
          : 'path components are lowercase letters and digits separated by ".", "_", "__" or "-"';
      return { ok: false, reason: `path component "${component}" is invalid: ${hint}` };
    }
  }

  return { ok: true, reference: { registry, path: components.join('/'), tag, digest }, name };
}

function looksLikeRegistry(component: string): boolean {
  return (
    component.includes('.') ||
    component.includes(':') ||
    component === 'localhost' ||
    component.toLowerCase() !== component
  );
}

function checkRegistry(registry: string): string | undefined {
  const [host, port, ...extra] = registry.split(':');
  if (extra.length > 0 || (port !== undefined && !PORT.test(port))) {
    return `registry "${registry}" must be a host name with an optional numeric port`;
  }
  if (port !== undefined && Number(port) > 65535) {
    return `registry port ${port} is above 65535`;
  }
  if (!host.split('.').every((label) => HOST_LABEL.test(label))) {
    return `registry host "${host}" is not a valid host name`;
  }
  return undefined;
}

/**
 * Tells whether `image` is allowed by one pattern: a pattern ending in `/` or `*` is a prefix,
 * a pattern with a tag or digest must equal the reference, and a bare name allows every tag of
 * that repository. References are compared as written, so `busybox` and
 * `docker.io/library/busybox` are different names.
 */
export function imageMatchesPattern(image: string, pattern: string): boolean {
  if (pattern.endsWith('*')) {
    return image.startsWith(pattern.slice(0, -1));
  }
  if (pattern.endsWith('/')) {
    return image.startsWith(pattern);
  }
  if (image === pattern) {
    return true;
  }

  const parsedPattern = parseImageReference(pattern);
  const parsedImage = parseImageReference(image);
  if (!parsedPattern.ok || !parsedImage.ok) {
    return false;
  }
  const patternHasVersion =
    parsedPattern.reference.tag !== undefined || parsedPattern.reference.digest !== undefined;
  return !patternHasVersion && parsedPattern.name === parsedImage.name;
}
