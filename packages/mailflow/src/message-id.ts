import { randomBytes } from 'node:crypto';

// 40 random bits per process and a counter: unique across the cluster without a
// random draw per message (randomBytes showed in the SMTP profile).
const processTag = randomBytes(5).toString('hex').toUpperCase();
let counter = 0;

/** Cluster-unique, roughly time-ordered message id: base-36 time, process tag, counter. */
export function newMessageId(): string {
  counter = (counter + 1) % 1_679_616; // 36^4
  return Date.now().toString(36).toUpperCase() + processTag + counter.toString(36).toUpperCase().padStart(4, '0');
}
