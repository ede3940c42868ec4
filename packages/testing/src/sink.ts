import { SMTPServer } from 'smtp-server';

export interface SinkMessage {
  from: string;
  to: string[];
  /** The DATA bytes exactly as received (after dot-unstuffing). */
  raw: Buffer;
  /** Whether the client had switched to TLS (STARTTLS, with smtp-server's built-in certificate). */
  secure: boolean;
  /** What the client passed of RFC 3461 (only when the sink offers DSN) and BODY=. */
  dsn: { ret: string | null; envid: string | null };
  rcptDsn: { address: string; notify?: string[]; orcpt?: string }[];
  bodyType: string;
}

/**
 * An outside mail server for relay tests: accepts everything except the recipients
 * `reject` answers for (e.g. `550 5.1.1 no such user`), and keeps every message it got.
 * `dsn` makes it offer the DSN extension; `no8bit` makes it withhold 8BITMIME.
 */
export async function startSink(options: { port?: number; reject?: (rcpt: string) => string | undefined; dsn?: boolean; no8bit?: boolean } = {}) {
  const messages: SinkMessage[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH'],
    hideENHANCEDSTATUSCODES: true,
    hideDSN: !options.dsn,
    hide8BITMIME: Boolean(options.no8bit),
    disableReverseLookup: true,
    logger: false,
    onRcptTo(address, _session, cb) {
      const reply = options.reject?.(address.address);
      if (!reply) return cb();
      const code = Number(reply.slice(0, 3));
      cb(Object.assign(new Error(reply.slice(4)), { responseCode: code }));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const envelope = session.envelope as typeof session.envelope & { dsn?: { ret: string | null; envid: string | null }; bodyType?: string };
        messages.push({
          from: envelope.mailFrom ? envelope.mailFrom.address : '',
          to: envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
          secure: session.secure,
          dsn: envelope.dsn ?? { ret: null, envid: null },
          rcptDsn: envelope.rcptTo.map((r) => ({ address: r.address, ...((r as { dsn?: { notify?: string[]; orcpt?: string } }).dsn ?? {}) })),
          bodyType: envelope.bodyType ?? '7bit',
        });
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const port = (server.server.address() as { port: number }).port;
  return {
    port,
    messages,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
