import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallDisk {
  path: string;
  /** Bytes free now. */
  free(): number;
  /** Fills the disk until only `leave` bytes are free (one filler file). */
  fill(leave: number): void;
  /** Removes the filler. */
  empty(): void;
  unmount(): void;
}

/** A real small disk: a tmpfs of `size` (e.g. `16m`) mounted for a test. Needs root (CI runs tests as root). */
export function mountTmpfs(size: string): SmallDisk {
  const path = mkdtempSync(join(tmpdir(), 'mailgrid-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', path], { stdio: 'pipe' });
  } catch (err) {
    rmSync(path, { recursive: true, force: true });
    throw new Error(`this test needs to mount a tmpfs (run as root): ${(err as Error).message}`);
  }
  const filler = join(path, 'filler');
  const free = () => {
    const s = statfsSync(path);
    return s.bavail * s.bsize;
  };
  return {
    path,
    free,
    fill(leave) {
      writeFileSync(filler, Buffer.alloc(Math.max(0, free() - leave)));
    },
    empty() {
      rmSync(filler, { force: true });
    },
    unmount() {
      execFileSync('umount', [path], { stdio: 'pipe' });
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** A data dir whose `sub` (store, queue) lives on `disk`, the rest on the ordinary one. */
export function dataDirWith(disk: SmallDisk, sub: string): string {
  const dataDir = mkdtempSync(join(tmpdir(), 'mailgrid-node-'));
  mkdirSync(join(disk.path, sub));
  execFileSync('ln', ['-s', join(disk.path, sub), join(dataDir, sub)]);
  return dataDir;
}
