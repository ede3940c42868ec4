import { statfs } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Replies, type MailError } from './errors.js';

/**
 * Keeps a disk from filling up: what `statfs` said was free, less every byte taken since
 * (reserved before it is written), must stay above a floor. A fresh `statfs` every couple
 * of seconds replaces the count, so a burst of mail between two looks cannot run the disk
 * to zero, and mail is taken again within seconds once space returns.
 */
export class DiskGuard {
  private free = Infinity;
  private checkedAt = 0;
  private reserved = 0;
  private _refusing = false;

  constructor(private readonly options: { path: string; floor: () => number; log: Logger; everyMs?: number }) {}

  /** Whether the last reservation was refused (the disk below its floor): the disk guard is active. */
  get refusing(): boolean {
    return this._refusing;
  }

  /** Bytes that may still be taken above the floor, as last counted (Infinity before the first look). */
  get headroom(): number {
    return this.free - this.reserved - this.options.floor();
  }

  /** `452 4.3.1` when taking `bytes` would leave less than the floor free; else undefined, with the bytes counted. */
  async reserve(bytes = 0): Promise<MailError | undefined> {
    if (Date.now() - this.checkedAt > (this.options.everyMs ?? 2_000)) {
      this.checkedAt = Date.now();
      try {
        const s = await statfs(this.options.path);
        this.free = s.bavail * s.bsize;
        this.reserved = 0;
      } catch (err) {
        this.options.log.warn({ event: 'disk.statfs-failed', path: this.options.path, err }, 'cannot read free disk space');
      }
    }
    this._refusing = this.free - this.reserved - bytes < this.options.floor();
    if (this._refusing) return Replies.diskFull();
    this.reserved += bytes;
    return undefined;
  }
}
