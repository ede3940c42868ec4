import { findBadByte } from '@mailgrid/core';
import { isAscii } from 'node:buffer';

const LF = 0x0a;

/**
 * Collects the DATA stream and checks it as it arrives: every CR must be followed by LF
 * and every LF preceded by CR, and no NUL. A message that breaks this is refused whole —
 * the bare-LF forms are what SMTP smuggling uses, and nothing we store or relay may carry
 * them. Fed chunk by chunk from the stream's 'data' events (a Writable and a pipe per
 * message cost the SMTP thread more than the checks).
 */
export class MessageCollector {
  readonly chunks: Buffer[] = [];
  bytes = 0;
  /** First offending byte's offset, or -1. */
  badAt = -1;
  /** A byte over 127 was seen: the message is 8-bit, whatever the client declared. */
  eightBit = false;
  private last = LF;

  constructor(private readonly keepLimit: number) {}

  add(chunk: Buffer): void {
    if (this.badAt < 0) {
      const bad = findBadByte(chunk, this.last);
      if (bad >= 0) this.badAt = this.bytes + bad;
    }
    if (!this.eightBit && !isAscii(chunk)) this.eightBit = true;
    this.last = chunk.length ? chunk[chunk.length - 1] : this.last;
    this.bytes += chunk.length;
    // Over the limit or already refused: keep reading so the session stays in sync, drop the bytes.
    if (this.badAt < 0 && this.bytes <= this.keepLimit) this.chunks.push(chunk);
  }
}
