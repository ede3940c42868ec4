import * as grpc from '@grpc/grpc-js';

/** Ids that travel with a call so one message can be followed across nodes. */
export interface Trace {
  session?: string;
  message?: string;
  node?: string;
  /** The epoch of the primary a Mailbox or Rules call is meant for (see Primary): a write is fenced by it. */
  epoch?: string;
}

const KEYS = { session: 'x-mailgrid-session', message: 'x-mailgrid-message', node: 'x-mailgrid-node', epoch: 'x-mailgrid-epoch' } as const;

export function traceMetadata(trace: Trace): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [field, key] of Object.entries(KEYS)) {
    const v = trace[field as keyof Trace];
    if (v) md.set(key, v);
  }
  return md;
}

export function traceFromMetadata(md: grpc.Metadata): Trace {
  const out: Trace = {};
  for (const [field, key] of Object.entries(KEYS)) {
    const v = md.get(key)[0];
    if (typeof v === 'string') out[field as keyof Trace] = v;
  }
  return out;
}

/** Every call has a deadline. */
export function deadline(ms: number): grpc.Deadline {
  return new Date(Date.now() + ms);
}

/** grpc-js's own messages (it writes to stderr by default) go into the node's pino log. */
export function routeGrpcLogs(log: { warn: (obj: object, msg: string) => void }): void {
  const write = (...args: unknown[]) => log.warn({ component: 'grpc', event: 'grpc.log' }, args.map(String).join(' '));
  grpc.setLogger({ error: write, info: write, debug: write } as Partial<Console>);
}
