import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { resolveHostPath } from './policy';

/**
 * Resolves a spec's build context against the context root. Returns undefined when the context
 * resolves outside the root (through `..` or a symlink), so a spec cannot pack arbitrary host files.
 */
export function resolveBuildContext(contextRoot: string, context: string): string | undefined {
  const root = resolveHostPath(contextRoot);
  const dir = resolveHostPath(path.resolve(root, context));
  const inside = dir === root || dir.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  return inside ? dir : undefined;
}

/**
 * Hashes a build context directory: relative paths, entry types, permission bits, file contents
 * and symlink targets, walked in sorted order, plus the Dockerfile name. Equal hashes mean the
 * same build input, so the hash can name the built image.
 */
export async function hashBuildContext(
  dir: string,
  dockerfile: string | undefined,
): Promise<string> {
  const hash = createHash('sha256');
  hash.update(`dockerfile\0${dockerfile ?? 'Dockerfile'}\0`);
  await hashDirectory(dir, '', hash);
  return hash.digest('hex');
}

async function hashDirectory(
  root: string,
  relative: string,
  hash: ReturnType<typeof createHash>,
): Promise<void> {
  const entries = await fs.promises.readdir(path.join(root, relative), { withFileTypes: true });
  entries.sort(compareNames);

  for (const entry of entries) {
    const entryPath = path.join(relative, entry.name);
    const absolute = path.join(root, entryPath);
    const stat = await fs.promises.lstat(absolute);
    const mode = (stat.mode & 0o7777).toString(8);

    if (entry.isDirectory()) {
      hash.update(`dir\0${entryPath}\0${mode}\0`);
      await hashDirectory(root, entryPath, hash);
    } else if (entry.isSymbolicLink()) {
      hash.update(`symlink\0${entryPath}\0${await fs.promises.readlink(absolute)}\0`);
    } else if (entry.isFile()) {
      hash.update(`file\0${entryPath}\0${mode}\0${stat.size}\0`);
      await hashFile(absolute, hash);
    }
  }
}

// Code-unit order, unlike localeCompare, is the same on every machine.
function compareNames(a: fs.Dirent, b: fs.Dirent): number {
  if (a.name === b.name) {
    return 0;
  }
  return a.name < b.name ? -1 : 1;
}

function hashFile(file: string, hash: ReturnType<typeof createHash>): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = fs.createReadStream(file);
    stream.on('data', (chunk) => hash.update(chunk));
    stream.on('error', reject);
    stream.on('end', () => resolve());
  });
}
