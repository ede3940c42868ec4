import { Replies, type MailError } from '@mailgrid/core';
import type { EventEmitter } from 'node:events';

/** A request of a chunked call (Delivery.Deliver, Submit.Submit): the envelope comes with the first chunk. */
export interface ChunkedRequest<E> {
  envelope?: E | null;
  chunk?: Buffer;
}

interface Writable<E> extends EventEmitter {
  write(req: ChunkedRequest<E>): boolean;
  end(): void;
  readonly destroyed: boolean;
}

/** Writes the envelope and the body in chunks of at most `chunkBytes`, waiting for drain; ends the stream. */
export async function writeChunked<E>(stream: Writable<E>, envelope: E, body: Buffer, chunkBytes: number): Promise<void> {
  if (!stream.write({ envelope, chunk: body.subarray(0, chunkBytes) })) await drained(stream);
  for (let i = chunkBytes; i < body.length; i += chunkBytes) {
    // A failed or cancelled call: its callback has the error; stop writing.
    if (stream.destroyed) return;
    if (!stream.write({ chunk: body.subarray(i, i + chunkBytes) })) await drained(stream);
  }
  if (!stream.destroyed) stream.end();
}

/** The stream can take more, or is gone (its error reaches the call's callback). */
function drained(stream: EventEmitter & { destroyed: boolean }): Promise<void> {
  if (stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      for (const e of ['drain', 'error', 'close']) stream.off(e, done);
      resolve();
    };
    for (const e of ['drain', 'error', 'close']) stream.once(e, done);
  });
}

/**
 * The receiving end of a chunked call: the envelope and the whole body, or the MailError
 * for a request that does not add up (no envelope, two, a chunk before it, more than twice
 * `maxBytes`, refused before it is all in memory).
 */
export function receiveChunked<E>(call: EventEmitter, maxBytes: () => number, done: (received: { envelope: E; body: Buffer } | MailError) => void): void {
  let envelope: E | undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  let failed: MailError | undefined;
  call.on('data', (req: ChunkedRequest<E>) => {
    if (failed) return;
    if (req.envelope) {
      if (envelope) failed = Replies.malformedRequest('envelope sent twice');
      envelope = req.envelope;
    }
    if (req.chunk?.length) {
      if (!envelope) failed = Replies.malformedRequest('chunk before envelope');
      size += req.chunk.length;
      const max = maxBytes();
      if (size > max * 2) failed = Replies.messageTooBig(max);
      else chunks.push(req.chunk);
    }
  });
  call.on('end', () => {
    if (failed) return done(failed);
    if (!envelope) return done(Replies.malformedRequest('no envelope'));
    done({ envelope, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) });
  });
}
