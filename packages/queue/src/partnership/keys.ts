import { z } from 'zod';

/** `queues/<node>/<store>/copies`: the copies of a queue store that have every answered write (written fenced by its owner). */
export const copiesValue = z.object({ nodes: z.array(z.string()) });
/** `queues/<node>/<store>/claim`: written once, by the partner that took the queue over, with the log position it took. */
export const claimValue = z.object({ by: z.string(), seq: z.number(), epoch: z.number(), at: z.number() });
