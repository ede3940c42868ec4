import { SmtpTranscript } from './smtp-transcript.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` until it returns something other than undefined (errors count as not yet). */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(50);
  }
}

/**
 * One SMTP transaction on its own connection (`proxy`: a PROXY header to send first).
 * Returns the reply to MAIL when that refuses, else the reply to the final dot.
 */
export async function sendMail(target: string | number, m: { from?: string; to: string[]; data: string; proxy?: string }): Promise<string> {
  const [host, port] = typeof target === 'number' ? ['127.0.0.1', target] : [target.split(':')[0], Number(target.split(':')[1])];
  const s = await SmtpTranscript.open(port, host);
  try {
    if (m.proxy) s.write(m.proxy);
    await s.expect('220');
    await s.send('EHLO client.test', '250');
    s.write(`MAIL FROM:<${m.from ?? 'sender@sender.test'}>\r\n`);
    const mail = await s.reply();
    if (!mail.startsWith('250')) return mail;
    for (const r of m.to) await s.send(`RCPT TO:<${r}>`, '250');
    await s.send('DATA', '354');
    s.write(m.data + '.\r\n');
    const reply = await s.reply();
    s.write('QUIT\r\n');
    return reply;
  } finally {
    s.close();
  }
}
